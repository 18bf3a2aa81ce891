"""Every code block of README.md and docs/*.md runs in the test suite, as a user would type it.

A fenced block runs by its language; an HTML comment on the line just before the fence,
``<!-- doc-test: WORDS -->``, says how:

* ``steps=N``: the one change the test makes to what is written. A ``pathwise train`` (or ``tune``) command's
  ``--steps V`` becomes ``V * N / M``, M being the block's first ``--steps`` (so a resume still continues past
  the run it resumes), and such a command without ``--steps`` gets ``--steps N``; in a Python block every
  ``agent.learn(n)`` learns ``min(n, N)`` steps. Nothing else (networks, presets, episodes, trials) changes.
* ``slow``: the block takes minutes; it runs under ``make test-slow``. The default suite checks it without
  training: each ``pathwise train ALGO`` command is parsed and validated as the CLI does before it builds
  anything (options, values, env id, preset), each other command's flags must be in its ``--help``, and a Python
  block must compile with every ``pw.NAME.NAME`` it uses existing.
* ``run``: a Python block that runs in the default suite (the default for a Python block without ``slow``).
* ``synopsis``: a usage line with placeholders (``ALGO``, ``RUN_DIR``): each command exists and each flag it
  shows is in its ``--help``.
* ``preset=ALGO``: a TOML block in the form of ``pathwise/presets/ALGO.toml``: it parses, and each table builds
  ALGO's config for its environment id.
* ``checked``: a block that cannot run inside a test (several machines, a database server, workers started in the
  background by a shell loop); its ``pathwise`` commands are checked as a ``slow`` block's are.
* ``session=NAME``: the blocks of one session run in order in one working directory and one Python namespace,
  as a user reads a section top to bottom (a later block uses what an earlier one made).
* ``make``: a bash block of ``make TARGET`` lines: each target is in the Makefile and ``make -n TARGET``
  succeeds (running ``make test`` from inside the test suite would run the suite in itself).

``bash`` blocks run their ``pathwise ...`` lines in-process (``pathwise.cli.main``); ``console`` blocks their
``$ pathwise ...`` lines (the other lines are the output shown); a ``pip install "pathwise[EXTRA]"`` line must name
an extra of pyproject.toml (the test does not install anything). Blocks without a language are text (file
layouts, diagrams) and may not hold a command. Each block runs in a fresh temporary working directory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import types
from pathlib import Path

import pytest

import pathwise as pw
from pathwise import algorithms, presets, registry
from pathwise import config as cfg_mod
from pathwise.cli import COMMANDS, main

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LANGUAGES = {"python", "bash", "console", "toml", "text", ""}
WORDS = {"slow", "run", "synopsis", "make", "checked"}


@dataclasses.dataclass
class Block:
    path: Path
    line: int
    lang: str
    body: str
    words: set[str]
    options: dict[str, str]

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}-{self.lang or 'text'}"

    @property
    def steps(self) -> int | None:
        return int(self.options["steps"]) if "steps" in self.options else None


def parse(path: Path, text: str | None = None) -> list[Block]:
    """The fenced blocks of a Markdown file with the directive just before each."""
    text = path.read_text() if text is None else text
    out = []
    for m in re.finditer(r"^```([\w-]*)[ \t]*\n(.*?)^```[ \t]*$", text, flags=re.S | re.M):
        before = text[:m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        directive = re.fullmatch(r"\s*<!--\s*doc-test:(.*?)-->\s*", before)
        words = directive.group(1).split() if directive else []
        out.append(Block(path, text.count("\n", 0, m.start()) + 1, m.group(1), m.group(2),
                         {w for w in words if "=" not in w}, dict(w.split("=", 1) for w in words if "=" in w)))
    return out


BLOCKS = [b for p in DOCS for b in parse(p)]
CODE = [b for b in BLOCKS if b.lang not in ("", "text")]


SHELL = {"for", "do", "done", "wait", "then", "fi", "if"}


def commands(block: Block, shell: bool = False) -> list[list[str]]:
    """The command lines of a bash or console block, as argv lists: comments dropped, ``\\`` continuations joined,
    ``;``/``&&``/``&`` separated commands split. Shell control words (``for``, ``done``, ``wait``) and ``$i`` are
    only allowed with ``shell`` (a ``checked`` block: ``$i`` reads as 0)."""
    text = block.body.replace("\\\n", " ")
    lines = text.splitlines()
    if block.lang == "console":
        lines = [ln[2:] for ln in lines if ln.startswith("$ ")]
    out = []
    for line in lines:
        for part in re.split(r"\s*(?:;|&&|&)\s*", line.split(" #", 1)[0] if not line.startswith("#") else ""):
            argv = shlex.split(part, comments=True)
            if argv and argv[0] in ("do", "then"):
                argv = argv[1:]
            if not argv:
                continue
            if argv[0] in SHELL or any("$" in a for a in argv):
                assert shell, f"{block.id}: `{part}` is shell control; mark the block `checked` or write commands"
                if argv[0] in SHELL:
                    continue
                argv = [a.replace("$i", "0") for a in argv]
            out.append(argv)
    return out


def scaled(argv: list[str], block: Block) -> list[str]:
    """A ``pathwise`` argv with the block's ``steps=N`` applied (module docstring)."""
    n = block.steps
    if n is None or argv[:2] not in (["pathwise", "train"], ["pathwise", "tune"]):  # tune: --steps per trial
        return argv
    firsts = [int(float(c[c.index("--steps") + 1])) for c in commands(block) if "--steps" in c]
    argv = list(argv)
    if "--steps" in argv:
        i = argv.index("--steps") + 1
        argv[i] = str(max(1, int(float(argv[i])) * n // firsts[0]))
    elif "--resume" not in argv and "--help" not in argv:
        argv[3:3] = ["--steps", str(n)]
    return argv


def run_cli(argv: list[str]) -> str:
    """``pathwise ARGS`` in-process; its output (the test fails on a non-zero exit with the error shown)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv[1:])
    assert rc == 0, f"`{shlex.join(argv)}` exited {rc}: {err.getvalue()[-2000:]}"
    return out.getvalue()


def help_of(argv: list[str]) -> str:
    """The ``--help`` text of the (sub)command an argv runs."""
    words = [w for w in argv[1:] if not w.startswith("-")]
    cmd = words[0]
    assert cmd in COMMANDS, f"`{shlex.join(argv)}`: unknown command {cmd!r}"
    if cmd == "train":
        prefix = ["train", "--resume", "x"] if "--resume" in argv else ["train", words[1]]
    else:
        prefix = [cmd, words[1]] if cmd in ("solve", "estimators", "tune") else [cmd]
    return run_cli(["pathwise", *prefix, "--help"])


def check_flags(argv: list[str]) -> None:
    text = help_of(argv)
    for flag in (a.split("=", 1)[0] for a in argv if a.startswith("--") and a != "--help"):
        assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text), f"`{shlex.join(argv)}`: {flag} is not " \
                                                                          "in its --help"


def check_command(argv: list[str]) -> None:
    """What the CLI checks before it trains: every option and value of a ``train`` command; else the flags."""
    if argv[:2] == ["pip", "install"]:
        return check_pip(argv)
    assert argv[0] == "pathwise", f"`{shlex.join(argv)}`: teach tests/test_docs.py to check this command"
    if argv[1:2] == ["train"] and "--resume" not in argv and "--help" not in argv:
        from pathwise.cli import _parse_train

        if "--preset-file" in argv and not Path(argv[argv.index("--preset-file") + 1]).exists():
            check_flags(argv)  # the file comes from an earlier command of the block (which the slow suite runs)
            i = argv.index("--preset-file")
            argv = argv[:i] + argv[i + 2:]
        assert _parse_train(argv[2:]) is not None
    else:
        check_flags(argv)


def check_pip(argv: list[str]) -> None:
    """``pip install "pathwise[EXTRA]"``: the extra exists (nothing is installed)."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for arg in argv[2:]:
        m = re.fullmatch(r"pathwise\[([\w,-]+)\]", arg)
        assert m and set(m.group(1).split(",")) <= set(extras), f"`{shlex.join(argv)}`: no such extra"


def run_command(argv: list[str]) -> None:
    if argv[:2] == ["pip", "install"]:
        check_pip(argv)
    elif argv[0] == "pathwise":
        run_cli(argv)
    else:
        raise AssertionError(f"`{shlex.join(argv)}`: teach tests/test_docs.py to run this command")


def check_python(block: Block) -> None:
    code = compile(block.body, block.id, "exec")
    del code
    for name in sorted(set(re.findall(r"\bpw((?:\.[A-Za-z_]\w*)+)", block.body))):
        obj = pw
        for part in name.strip(".").split("."):
            assert hasattr(obj, part), f"{block.id}: pw{name} does not exist"
            obj = getattr(obj, part)


def run_python(block: Block, monkeypatch, namespace: dict | None = None) -> None:
    if block.steps is not None:
        learn, n = pw.Agent.learn, block.steps
        monkeypatch.setattr(pw.Agent, "learn", lambda self, total, *a, **k: learn(self, min(int(total), n), *a, **k))
    monkeypatch.setattr(registry, "_USER", {})  # a block that registers an environment leaves no trace
    if namespace is None:
        module = types.ModuleType("doc_block")  # a module of its own, as a script is (dataclasses look it up)
        monkeypatch.setitem(sys.modules, "doc_block", module)
        namespace = module.__dict__
    exec(compile(block.body, str(block.path), "exec"), namespace)


def check_preset(block: Block) -> None:
    data = tomllib.loads(block.body)
    assert data.pop("version") == presets.PRESET_VERSION
    algorithm = algorithms.get(block.options["preset"])
    for env_id, table in data.items():
        registry.check_id(env_id)
        table = dict(table)
        assert set(table.pop("run", {})) <= set(presets.RUN_KEYS)
        cfg_mod.build(algorithm.Config, algorithm.name, table)


def check_make(block: Block) -> None:
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.search(r"^\.PHONY:(.*)$", makefile, flags=re.M).group(1).split())
    for argv in commands(block):
        assert argv[0] == "make" and set(argv[1:]) <= targets, f"{block.id}: `{shlex.join(argv)}` is not a target"
        if shutil.which("make"):
            done = subprocess.run(["make", "-n", "-C", str(ROOT), *argv[1:]], capture_output=True, text=True)
            assert done.returncode == 0, done.stderr


#: Gymnasium's MuJoCo ids (the ``mujoco`` extra).
MUJOCO_ID = re.compile(r"\b(Ant|HalfCheetah|Hopper|Humanoid|HumanoidStandup|InvertedDoublePendulum|InvertedPendulum|"
                       r"Pusher|Reacher|Swimmer|Walker2d)-v\d")


def names_dmc(block: Block) -> bool:
    """Whether a block names a DeepMind Control Suite task (the ``dmc`` extra)."""
    return "dm_control/" in block.body


def names_mujoco(block: Block) -> bool:
    """Whether a block names a Gymnasium MuJoCo task (the ``mujoco`` extra)."""
    return bool(MUJOCO_ID.search(block.body))


def skip_without_extras(block: Block, builds_env: bool = True) -> None:
    """Skip, naming the extra, a block on the DeepMind Control Suite when the ``dmc`` extra is not installed (Shimmy
    registers the suite's ids, so even checking a command needs it), and one that builds a Gymnasium MuJoCo task
    when the ``mujoco`` extra is not (Gymnasium registers those ids itself: checking a command needs no extra)."""
    if "make" in block.words:
        return
    if names_dmc(block):
        pytest.importorskip("shimmy", reason="DeepMind Control Suite ids need the dmc extra: pip install -e '.[dmc]'")
        pytest.importorskip("dm_control", reason="DeepMind Control Suite ids need the dmc extra")
    if builds_env and names_mujoco(block):
        pytest.importorskip("mujoco",
                            reason="Gymnasium's MuJoCo tasks need the mujoco extra: pip install -e '.[mujoco]'")


def check(block: Block) -> None:
    """The default suite's check of a block that runs only in the slow suite (or cannot run: make, synopsis)."""
    skip_without_extras(block, builds_env=False)
    if "make" in block.words:
        check_make(block)
    elif "synopsis" in block.words:
        for argv in commands(block):  # placeholders: ALGO is any algorithm; [--flag VALUE] an optional flag
            check_flags([a.strip("[]").replace("ALGO", "bptt") for a in argv])
    elif "preset" in block.options:
        check_preset(block)
    elif block.lang == "python":
        check_python(block)
    else:
        for argv in commands(block, shell="checked" in block.words):
            if argv[0] == "pathwise" or "checked" not in block.words:  # `createdb` etc. of a checked block: not ours
                check_command(scaled(argv, block))


def execute(block: Block, monkeypatch, namespace: dict | None = None) -> None:
    skip_without_extras(block)
    if any(argv[:2] == ["pathwise", "tune"] for argv in (commands(block) if block.lang != "python" else [])):
        pytest.importorskip("optuna", reason="pathwise tune needs the tune extra (optuna)")
    if re.search(r"onnx|--format onnx", block.body):
        pytest.importorskip("jax2onnx", reason="ONNX export needs the export extra")
        pytest.importorskip("onnxruntime", reason="ONNX export needs the export extra")
    if block.lang == "python":
        run_python(block, monkeypatch, namespace)
    else:
        for argv in commands(block):
            run_command(scaled(argv, block))


def _runs_by_default(block: Block) -> bool:
    return not ({"slow", "make", "synopsis", "checked"} & block.words) and "preset" not in block.options


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_every_block_says_how_it_is_tested():
    assert CODE, "README.md and docs/*.md have code blocks"
    for b in BLOCKS:
        assert b.lang in LANGUAGES, f"{b.id}: unknown language {b.lang!r}; teach tests/test_docs.py to run it"
        assert b.words <= WORDS and set(b.options) <= {"steps", "preset", "session"}, f"{b.id}: unknown doc-test words"
        if b.lang in ("", "text"):
            assert not re.search(r"^(\$ |pathwise |python |>>> )", b.body, flags=re.M), \
                f"{b.id}: a block without a language holds a command; give it one so it runs"
        if b.lang == "toml":
            assert "preset" in b.options, f"{b.id}: say which algorithm's preset the TOML block is (preset=ALGO)"


ALONE = [b for b in CODE if "session" not in b.options]


def needs_envs(block: Block) -> bool:
    """Whether a block names a DeepMind Control Suite or Gymnasium MuJoCo task: it skips without the extras, so
    ``make test-envs`` runs these (marked ``envs``) again with the extras installed."""
    return names_dmc(block) or names_mujoco(block)


@pytest.mark.parametrize("block", [pytest.param(b, marks=pytest.mark.envs) if needs_envs(b) else b for b in ALONE],
                         ids=[b.id for b in ALONE])
def test_doc_block(block, in_tmp, monkeypatch):
    """Runs a block (default suite) or checks one that runs in the slow suite."""
    if _runs_by_default(block):
        execute(block, monkeypatch)
    else:
        check(block)


SLOW = [b for b in CODE if "slow" in b.words and "session" not in b.options]
SESSIONS = sorted({b.options["session"] for b in CODE if "session" in b.options})


@pytest.mark.slow
@pytest.mark.parametrize("block", SLOW, ids=[b.id for b in SLOW])
def test_slow_doc_block(block, in_tmp, monkeypatch):
    execute(block, monkeypatch)


def _session(name: str) -> list[Block]:
    return [b for b in CODE if b.options.get("session") == name]


@pytest.mark.parametrize("name", SESSIONS)
def test_doc_session(name, in_tmp, monkeypatch):
    """A session's blocks in order, sharing the working directory and a namespace (checked where one is slow)."""
    blocks = _session(name)
    if any("slow" in b.words for b in blocks):
        for block in blocks:
            check(block)
        return
    module = types.ModuleType("doc_session")
    monkeypatch.setitem(sys.modules, "doc_session", module)
    for block in blocks:
        execute(block, monkeypatch, module.__dict__)


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in SESSIONS if any("slow" in b.words for b in _session(n))])
def test_slow_doc_session(name, in_tmp, monkeypatch):
    module = types.ModuleType("doc_session")
    monkeypatch.setitem(sys.modules, "doc_session", module)
    for block in _session(name):
        execute(block, monkeypatch, module.__dict__)


def test_a_broken_block_fails(tmp_path, monkeypatch):
    """The checks above can fail: an old option name, an unknown flag, a missing API name, a wrong preset key."""
    monkeypatch.chdir(tmp_path)
    broken = parse(ROOT / "x.md", "<!-- doc-test: steps=50 slow -->\n```bash\n"
                                  "pathwise train bptt --env pendulum --set learning_rate=1e-3\n```\n"
                                  "<!-- doc-test: slow -->\n```bash\npathwise evaluate runs/p --episode 3\n```\n"
                                  "<!-- doc-test: slow -->\n```python\nimport pathwise as pw\npw.maek('bptt')\n```\n"
                                  "<!-- doc-test: preset=bptt -->\n```toml\nversion = 1\n[\"Pendulum-v1\"]\n"
                                  "learning_rate = 1e-3\n```\n")
    with pytest.raises(ValueError, match="`learning_rate` was renamed `lr`"):
        check(broken[0])
    with pytest.raises(AssertionError, match="--episode is not in its --help"):
        check(broken[1])
    with pytest.raises(AssertionError, match=r"pw\.maek does not exist"):
        check(broken[2])
    with pytest.raises(ValueError, match="renamed `lr`"):
        check(broken[3])
    assert scaled(commands(broken[0])[0], broken[0])[3:5] == ["--steps", "50"]


def test_cited_files_exist():
    """Every repository path a document cites (`tests/test_x.py`, [link](path)) exists."""
    for path in DOCS:
        text = path.read_text()
        cited = re.findall(r"`((?:tests|benchmarks|examples|pathwise|docs)/[\w./-]+\.(?:py|md|toml|json))`", text)
        for name in (n for n in cited if not re.search(r"[A-Z]{3,}", n)):  # not a placeholder (ALGO, NAME)
            assert (ROOT / name).exists(), f"{path.name} cites {name}, which does not exist"
        for link in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text):
            assert (path.parent / link).exists(), f"{path.name} links to {link}, which does not exist"


def test_readme_has_the_two_commands_and_a_ten_line_example():
    text = (ROOT / "README.md").read_text()
    assert "make demo" in text and "make test" in text
    python = [b for b in parse(ROOT / "README.md") if b.lang == "python"]
    assert python and len([ln for ln in python[0].body.splitlines() if ln.strip()]) <= 12


def test_readme_shows_every_command():
    shown = {argv[1] for b in parse(ROOT / "README.md") if b.lang == "bash" for argv in commands(b)
             if argv[0] == "pathwise"}
    assert shown == set(COMMANDS)


def test_the_site_builds_with_strict(tmp_path):
    """`make docs`: MkDocs Material and the mkdocstrings API reference build with every warning an error."""
    pytest.importorskip("mkdocs", reason="the site needs the docs extra: pip install -e '.[docs]'")
    pytest.importorskip("mkdocstrings_handlers.python", reason="the API reference needs mkdocstrings[python]")
    pytest.importorskip("material", reason="the theme needs mkdocs-material")
    import os

    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    control = (tmp_path / "site" / "api" / "control" / "index.html").read_text()
    assert 'id="pathwise.control.ilqr.ilqr"' in control and 'id="pathwise.control.MPC"' in control
    assert 'id="pathwise.make"' in (tmp_path / "site" / "api" / "pathwise" / "index.html").read_text()
