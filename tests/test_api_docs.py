"""Every public class, function and method of pathwise's public API has a real docstring.

The public API is what ``pathwise`` and its public modules export: a module's ``__all__`` where it has one, else its
non-underscore names defined in pathwise. Methods are the public ones a pathwise class defines or inherits from a
pathwise class. ``inspect.getdoc`` follows inheritance, so an override of a documented method counts as documented
unless it is one whose behaviour differs per class (``System`` models, below), which must document its own. The
docstrings Python writes itself (a dataclass's or NamedTuple's signature) do not count.
"""

from __future__ import annotations

import importlib
import inspect
import re
import types

import pathwise
from pathwise import algorithms

MODULES = ["pathwise", "pathwise.control", "pathwise.systems", "pathwise.estimators", "pathwise.train",
           "pathwise.agent", "pathwise.export", "pathwise.checkpoint", "pathwise.envs", "pathwise.envs.dmc",
           "pathwise.rewards", "pathwise.registry", "pathwise.plots", "pathwise.tune", "pathwise.problems", "pathwise.seeds",
           "pathwise.ceilings", "pathwise.policy_file", "pathwise.render", "pathwise.diagnostics", "pathwise.models",
           "pathwise.distributions", "pathwise.rollout", "pathwise.loops", "pathwise.algorithms", "pathwise.types",
           "pathwise.networks", "pathwise.replay", "pathwise.spec", "pathwise.config", "pathwise.optim",
           "pathwise.starts", "pathwise.presets", *algorithms.ALGORITHMS.values(), "pathwise.algorithms.base",
           "pathwise.algorithms.critics", "pathwise.algorithms.svg_core", "pathwise.loops.simulated",
           "pathwise.loops.replay", "pathwise.loops.model_based", "pathwise.loops.branched", "pathwise.loops.on_policy", "pathwise.models.fit",
           "pathwise.models.noise", "pathwise.control.solution", "pathwise.control.lqr", "pathwise.control.ilqr",
           "pathwise.control.shooting", "pathwise.control.boxqp", "pathwise.control.multistart",
           "pathwise.control.sampling",
           "pathwise.estimators.studies", "pathwise.estimators.compare"]

# A System model's equations are what a user needs from it: an override of one of these in a pathwise System must
# say what *it* computes, not inherit the contract's words.
OWN_DOC = {"dynamics", "reward", "observe", "initial_state", "terminated"}


def _public_names(module: types.ModuleType) -> list[str]:
    if hasattr(module, "__all__"):
        return list(module.__all__)
    return [name for name, obj in vars(module).items()
            if not name.startswith("_") and getattr(obj, "__module__", "").startswith("pathwise")]


def _ours(obj) -> bool:
    return (getattr(obj, "__module__", None) or "").startswith("pathwise")


def _real(doc: str | None, name: str) -> bool:
    """A docstring a person wrote: not empty and not the signature a dataclass or NamedTuple writes for itself."""
    return bool(doc and doc.strip()) and not re.fullmatch(rf"{re.escape(name)}\(.*\)", doc.strip(), re.S)


def _methods(cls: type):
    """(name, attribute, class that defines it) for each public method or property a pathwise class has."""
    seen = set()
    for klass in cls.__mro__:
        if not _ours(klass):
            continue
        for name, attr in vars(klass).items():
            if name.startswith("_") or name in seen:
                continue
            if isinstance(attr, (staticmethod, classmethod)):
                attr = attr.__func__
            if isinstance(attr, property) and _constant_in_a_base(cls, name):
                continue  # a class constant (``state_dim``) computed per instance, as in ``SystemWrapper``
            if inspect.isfunction(attr) or isinstance(attr, property):
                seen.add(name)
                yield name, attr, klass


def _constant_in_a_base(cls: type, name: str) -> bool:
    return any(name in vars(k) and not isinstance(vars(k)[name], property) and not callable(vars(k)[name])
               for k in cls.__mro__)


def _doc(owner: type, name: str) -> str | None:
    """The docstring of ``owner.name``, inherited from the nearest base that has one (as ``inspect.getdoc``
    does, also for properties made with a lambda)."""
    for klass in owner.__mro__:
        attr = vars(klass).get(name)
        attr = attr.fget if isinstance(attr, property) else getattr(attr, "__func__", attr)
        if inspect.isfunction(attr) and attr.__doc__ and attr.__doc__.strip():
            return inspect.cleandoc(attr.__doc__)
    return None


def _is_system(cls: type) -> bool:
    from pathwise.systems import System

    return isinstance(cls, type) and issubclass(cls, System) and cls is not System


def _undocumented() -> list[str]:
    missing, checked = [], set()
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        for name in _public_names(module):
            obj = getattr(module, name)
            if not (inspect.isclass(obj) or inspect.isfunction(obj)) or not _ours(obj) or id(obj) in checked:
                continue
            checked.add(id(obj))
            where = f"{obj.__module__}.{obj.__qualname__}"
            if not _real(inspect.getdoc(obj), obj.__name__):
                missing.append(where)
            if not inspect.isclass(obj):
                continue
            for method, attr, owner in _methods(obj):
                label = f"{owner.__module__}.{owner.__qualname__}.{method}"
                doc = _doc(owner, method)
                if method in OWN_DOC and _is_system(owner):
                    doc = attr.fget.__doc__ if isinstance(attr, property) else attr.__doc__
                if not _real(doc, method) and label not in missing:
                    missing.append(label)
    return sorted(set(missing))


def test_every_public_name_has_a_docstring():
    missing = _undocumented()
    assert not missing, f"{len(missing)} public names without a docstring:\n  " + "\n  ".join(missing)


def test_the_check_sees_an_undocumented_function():
    """The walk is not vacuous: it visits the names it should and flags a function without a docstring."""

    def undocumented():
        pass

    assert not _real(inspect.getdoc(undocumented), "undocumented")
    assert _real(inspect.getdoc(pathwise.make), "make")
    assert not _real("Transition(obs, action, reward)", "Transition")
    names = _public_names(importlib.import_module("pathwise.systems"))
    assert "System" in names and "Pendulum" in names
