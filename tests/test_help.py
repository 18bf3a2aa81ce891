"""Every command's ``--help`` has one layout and none of tyro's or reST's artefacts; ``--help`` after ``--set``
shows the values the run would use and where they come from; ``pathwise list`` describes every algorithm."""

from __future__ import annotations

import re

import pytest

from pathwise import algorithms
from pathwise.cli import main

#: Text that only a formatting artefact puts into help: tyro's flag pairs for a ``no_`` field, its rendering of
#: ``None`` and of an optional type, its default text after a docstring that states the default, its boxes and
#: rules, reST markup, and a pointer to a docstring the user cannot see.
ARTEFACTS = ("--no-no-", "{None}", "(default: None)", "`", "╭", "│", "─", ":class:", ":func:",
             "module docstring", "[train options]")

HELP_ARGVS = [["--help"], ["train", "--help"], ["train", "--resume", "RUN", "--help"], ["evaluate", "--help"],
              ["list", "--help"], ["solve", "--help"], *[["solve", m, "--help"] for m in
                                                         ("lqr", "ilqr", "shooting", "mpc", "conditioning")],
              ["estimators", "--help"], ["export", "--help"], ["tune", "--help"], ["tune", "ddpg", "--help"], ["estimators", "gaussian", "--help"], ["estimators", "pendulum", "--help"],
              *[["train", a, "--help"] for a in algorithms.available()]]


def _help(argv, capsys) -> str:
    assert main(argv) == 0, argv
    return capsys.readouterr().out


@pytest.mark.parametrize("argv", HELP_ARGVS, ids=" ".join)
def test_help_has_one_layout_and_no_artefacts(argv, capsys):
    text = _help(argv, capsys)
    assert [a for a in ARTEFACTS if a in text] == [], text
    assert not re.search(r"\(default[^)]*\)\.?\s+\(default", text), text  # a default stated twice
    lines = text.splitlines()
    assert lines[0].startswith("usage: pathwise") and lines[1] == "", lines[:2]
    # the one layout: section titles end in ':' at column 0, entries are indented by two spaces
    for line in lines[2:]:
        assert not line or line.startswith("  ") or not line.startswith(" "), line
    titles = [ln for ln in lines if re.fullmatch(r"[a-z][^:]*:", ln)]
    if argv[-2:] != ["list", "--help"]:
        assert titles, text


def test_help_after_set_shows_the_values_used_and_their_source(capsys):
    text = _help(["train", "bptt", "--env", "Pendulum-v1", "--set", "horizon=17", "--batch-size", "9", "--help"],
                 capsys)
    entry = lambda flag: " ".join(  # noqa: E731  (one line: the page wraps at the terminal's width)
        re.search(rf"^  (?:{flag}) .*?(?=^  --)", text, flags=re.M | re.S).group(0).split())
    assert "(17, from --set)" in entry("--horizon"), entry("--horizon")
    assert "(9, from the command line)" in entry("--batch-size")
    assert "from the Pendulum-v1 preset" in entry("--schedule-updates")  # preset value, marked as such
    assert "(default: 50)" in entry("--warmup-updates")  # neither preset nor given: the default
    assert "from the Pendulum-v1 preset" in entry("--steps")
    plain = _help(["train", "bptt", "--env", "Pendulum-v1", "--no-preset", "--help"], capsys)
    assert "from the Pendulum-v1 preset" not in plain and "No preset applies" in plain


def test_list_gives_a_real_description_per_algorithm(capsys):
    text = _help(["list"], capsys)
    block = text.split("\n\n")[0].splitlines()[1:]
    assert [ln.split()[0] for ln in block] == algorithms.available()
    for line in block:
        assert "docstring" not in line and len(line.split(". ", 1)[-1]) > 20, line
