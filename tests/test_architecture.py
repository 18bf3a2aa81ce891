"""The architecture holds: every algorithm file has the one contract, the driver/CLI/facade never name an
algorithm, no function is over 60 lines, and no test hook lives in the library."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import re
from pathlib import Path

import pytest

from pathwise import algorithms
from pathwise.algorithms.base import LOOPS
from pathwise.config import Options

PACKAGE = Path(__file__).resolve().parents[1] / "pathwise"


def _functions(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


@pytest.mark.parametrize("name", list(algorithms.ALGORITHMS))
def test_every_algorithm_has_the_contract(name):
    algorithm = algorithms.get(name)
    module = algorithm.module
    assert algorithm.info.name == name and set(algorithm.info.loops) <= set(LOOPS)
    assert algorithm.info.continuous or algorithm.info.discrete
    assert dataclasses.is_dataclass(algorithm.Config) and issubclass(algorithm.Config, Options)
    assert algorithm.Config.__dataclass_params__.frozen
    assert hasattr(module.State, "_fields") or hasattr(module.State, "__dataclass_fields__"), "State is a pytree"
    for fn, params in ((algorithm.init, ["key", "spec", "config"]),
                       (algorithm.update, ["state", None, "key", "config"]),
                       (algorithm.act, ["state", "obs", "key", "deterministic"])):
        got = list(inspect.signature(fn).parameters)
        assert len(got) == len(params) and all(p is None or p == g for p, g in zip(params, got)), (fn, got)
    if "simulated" in algorithm.info.loops:
        assert callable(algorithm.hook("steps_per_update"))
    config = algorithm.Config()  # the defaults are valid
    assert hash(config) == hash(algorithm.Config())  # hashable: static under jit


@pytest.mark.parametrize("name", list(algorithms.ALGORITHMS))
def test_every_config_field_has_a_docstring(name):
    config = algorithms.get(name).Config
    documented = set()
    for cls in config.__mro__:
        try:
            source = inspect.getsource(cls)
        except (OSError, TypeError):
            continue
        body = ast.parse(inspect.cleandoc("\n" + source) if source.startswith(" ") else source).body[0].body
        for stmt, nxt in zip(body, body[1:]):
            if isinstance(stmt, ast.AnnAssign) and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
                documented.add(stmt.target.id)
    missing = [f.name for f in dataclasses.fields(config) if f.name not in documented]
    assert not missing, f"{name}: fields without a docstring: {missing}"


def test_driver_cli_and_facade_name_no_algorithm():
    names = set(algorithms.ALGORITHMS) | {m.rsplit(".", 1)[1] for m in algorithms.ALGORITHMS.values()}
    for file in ("cli.py", "train.py", "agent.py"):
        code = "\n".join(line for line in (PACKAGE / file).read_text().splitlines())
        strings_and_code = re.sub(r'"""(.|\n)*?"""', "", code)  # docstrings may show examples
        found = [n for n in names if re.search(rf"(?<![\w-]){re.escape(n)}(?![\w-])", strings_and_code)]
        assert not found, f"{file} names {found}"


def test_no_function_in_the_package_is_over_60_lines():
    long = []
    for path in PACKAGE.rglob("*.py"):
        for fn in _functions(ast.parse(path.read_text())):
            length = fn.end_lineno - fn.lineno + 1
            if length > 60:
                long.append(f"{path.relative_to(PACKAGE)}:{fn.name} ({length} lines)")
    assert not long, long


def test_no_per_algorithm_state_plumbing_or_test_hooks_in_the_library():
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        for word in (r"\bget_state\b", r"\bset_state\b", r"\bTRACE_COUNT\b", r"self\.traces\b", r"class Learner\b"):
            assert not re.search(word, text), f"{path.relative_to(PACKAGE)} has {word!r}"
