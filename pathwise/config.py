"""Configs: frozen dataclasses that validate themselves, built from defaults, presets, files and ``--set``.

Every algorithm's ``Config`` derives from :class:`Options`: a frozen dataclass with a docstring per
field whose ``checks()`` lists ``(condition, message)`` pairs; construction raises a ``ValueError`` that
names the first failed condition. A config is built in one order everywhere (the CLI, ``pw.make``,
``pathwise.train.train``, resuming a run)::

    defaults < preset for (algorithm, env) < config file or dict < overrides (--set KEY=VALUE)

and values from text (TOML, JSON, the command line) are coerced to the field's annotated type.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from pathlib import Path
from typing import Any, ClassVar


@dataclasses.dataclass(frozen=True)
class Options:
    """Base of every config: validation on construction (``checks``), nothing else."""

    RENAMED: ClassVar[dict[str, str]] = {}
    """Options renamed since an earlier release, ``old name -> new name``: a run record written then is read
    with the new names (:func:`upgrade`); a user who passes an old name is told the new one."""
    ADDED: ClassVar[dict[str, Any]] = {}
    """Options added since runs were first recorded, ``name -> the value that reproduces a run recorded before the
    option existed``: :func:`upgrade` fills them into such a record, so that it resumes as it ran. Each class of a
    config's bases keeps its own (they are merged along the MRO)."""

    def checks(self) -> list[tuple[bool, str]]:
        """``(condition, message)`` pairs that must hold; subclasses extend ``super().checks()``."""
        return []

    def resolved(self, spec: Any) -> "Options":
        """This config with every value that defers to the environment's registry record pinned to what the
        record gives ``spec`` now (``angle_features=None`` -> the record's angles; subclasses extend it), so that
        a run's config.json says what ran and resumes so even if the registry has changed since."""
        if getattr(self, "angle_features", ()) is None:
            return dataclasses.replace(self, angle_features=spec.angle_entries(None))
        return self

    def __post_init__(self) -> None:
        for ok, message in self.checks():
            if not ok:
                raise ValueError(f"Invalid {type(self).__module__.rsplit('.', 1)[-1]} config: {message}.")


def positive(config: Any, *names: str) -> list[tuple[bool, str]]:
    """Checks that each named field is > 0."""
    return [(getattr(config, n) > 0, f"{n}={getattr(config, n)} must be > 0") for n in names]


def at_least(config: Any, low: float, *names: str) -> list[tuple[bool, str]]:
    """Checks that each named field is >= ``low``."""
    return [(getattr(config, n) >= low, f"{n}={getattr(config, n)} must be >= {low:g}") for n in names]


def unit_interval(config: Any, *names: str, closed_low: bool = False) -> list[tuple[bool, str]]:
    """Checks that each named field is in (0, 1] (or [0, 1] with ``closed_low``)."""
    out = []
    for n in names:
        v = getattr(config, n)
        ok = (0.0 <= v <= 1.0) if closed_low else (0.0 < v <= 1.0)
        out.append((ok, f"{n}={v} must be in {'[' if closed_low else '('}0, 1]"))
    return out


def one_of(config: Any, name: str, choices: tuple[str, ...]) -> list[tuple[bool, str]]:
    """Checks that a field takes one of ``choices``."""
    value = getattr(config, name)
    return [(value in choices, f"{name}={value!r} must be one of {', '.join(repr(c) for c in choices)}")]


# -- dict <-> config ----------------------------------------------------------------------------------------


def to_dict(config: Any) -> dict[str, Any]:
    """A config as JSON-compatible values (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


#: The release that renamed the learning-rate options to one scheme (``lr``, or ``actor_lr`` and one per network).
RENAMED_IN = "0.3"


def rate_options(cls: Any) -> list[str]:
    """The step-size options of a config class or instance: ``lr`` (one optimizer), or ``actor_lr`` (the policy's)
    first and then one per other network (``critic_lr``, ``value_lr``, ``model_lr``, ``alpha_lr``)."""
    names = [f.name for f in dataclasses.fields(cls) if f.name == "lr" or f.name.endswith("_lr")]
    return sorted(names, key=lambda n: n != "actor_lr")


def added(cls: type) -> dict[str, Any]:
    """The options ``cls`` gained since runs were first recorded, with the values older runs ran with: the
    ``ADDED`` tables of ``cls`` and its bases."""
    out: dict[str, Any] = {}
    for base in reversed(cls.__mro__):
        out.update(vars(base).get("ADDED", {}))
    return out


def upgrade(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """A stored run record's config with the names of today: each old name in ``cls.RENAMED`` becomes its new one,
    and an option added since the record was written (:func:`added`) takes the value the run ran with."""
    fields = {f.name for f in dataclasses.fields(cls)}
    renamed = {old: new for old, new in getattr(cls, "RENAMED", {}).items() if old in values and old not in fields
               and new not in values}
    out = {renamed.get(k, k): v for k, v in values.items()}
    return {**{k: v for k, v in added(cls).items() if k in fields and k not in out}, **out}


def check_keys(cls: type, keys: Any, usage: str | typing.Callable[[str], str] = "{}=...",
               source: str = "config", spell: typing.Callable[[str], str] = str) -> None:
    """Refuse a renamed option (naming its new name) and a step size the algorithm does not have (naming those it has).

    ``usage`` shows how the user passes an option where ``keys`` came from: a template such as ``"--set {}=..."``
    or a function of the option's name; ``spell`` writes a name as the user typed it (``--learning-rate``). Other
    unknown keys are left to :func:`from_dict`.
    """
    if isinstance(usage, str):
        usage = usage.format
    fields = {f.name for f in dataclasses.fields(cls)}
    for key in keys:
        if key in fields:
            continue
        if key in getattr(cls, "RENAMED", {}):
            new = cls.RENAMED[key]
            raise ValueError(f"{source}: `{spell(key)}` was renamed `{spell(new)}` in {RENAMED_IN} "
                             f"(use {usage(new)}).")
        rates = rate_options(cls)
        if rates and (key in ("lr", "learning_rate") or key.endswith(("_lr", "learning_rate"))):
            kind = ("one optimizer: its step size is" if rates == ["lr"] else
                    "one optimizer per network, each with its own step size:")
            raise ValueError(f"{source}: there is no `{spell(key)}`; the algorithm has {kind} "
                             f"{', '.join(spell(r) for r in rates)} (use {usage(rates[0])}).")


def from_dict(cls: type, values: dict[str, Any], source: str = "config", complete: bool = False,
              usage: str = "{}=...") -> Any:
    """Build ``cls`` from ``values``, coercing each value to its field's type; unknown keys are refused, and with
    ``complete`` (a run's own record) so are missing ones: a default would silently replace what the run used."""
    if not isinstance(values, dict):
        raise ValueError(f"{source} must be a table of KEY = VALUE pairs, got {type(values).__name__}.")
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - fields)
    check_keys(cls, unknown, usage, source)
    if unknown:
        raise ValueError(f"Unknown {source} key(s) {unknown} for {cls.__module__}.{cls.__qualname__}. "
                         f"Valid keys: {', '.join(sorted(fields))}.")
    missing = sorted(fields - set(values)) if complete else []
    if missing:
        raise ValueError(f"{source} lacks the key(s) {missing}: it is damaged or was written by another pathwise "
                         "version; restore the file from the run's checkpoints (their meta record holds the config) "
                         "or retrain.")
    hints = typing.get_type_hints(cls)
    return cls(**{k: coerce(hints[k], v, k) for k, v in values.items()})


def coerce(tp: Any, value: Any, name: str = "value") -> Any:
    """Convert ``value`` (possibly a string from ``--set``) to the annotated type ``tp``."""
    try:
        return _coerce(tp, value, name)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValueError(f"Config key {name!r}: cannot use {value!r} ({exc}).") from exc


def _coerce(tp: Any, value: Any, name: str) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Literal:
        for a in args:
            if value == a or str(value) == str(a):
                return a
        raise ValueError(f"must be one of {list(args)}")
    if origin in (typing.Union, types.UnionType):
        return _coerce_union(args, value, name)
    if origin is tuple:
        if isinstance(value, str):
            value = [v for v in value.strip("()[] ").split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ValueError("must be a list of values such as 64,64 (on the command line) or (64, 64)")
        return tuple(_coerce(args[0] if args else str, v, name) for v in value)
    if tp is bool:
        return _coerce_bool(value)
    if tp is int:
        return _coerce_int(value)
    if tp is float:
        if isinstance(value, bool):
            raise ValueError("must be a number, not a boolean")
        number = float(value)
        if not math.isfinite(number):
            raise ValueError("must be a finite number")
        return number
    if tp is str:
        return str(value)
    return value


def _coerce_union(args: tuple, value: Any, name: str) -> Any:
    if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
        if type(None) in args:
            return None
    errors = []
    for a in args:
        if a is type(None):
            continue
        try:
            return _coerce(a, value, name)
        except (TypeError, ValueError) as exc:
            errors.append(str(exc))
    raise ValueError("; ".join(errors))


def _coerce_bool(value: Any) -> bool:
    if isinstance(value, str):
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError("must be true or false")
    return bool(value)


def _coerce_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("must be an integer")
    if isinstance(value, str):
        value = float(value) if any(c in value.lower() for c in ".e") else int(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("must be a finite whole number")
    if isinstance(value, float) and not value.is_integer():
        raise ValueError("must be an integer")
    if not isinstance(value, (int, float)) and not (hasattr(value, "__index__") and not isinstance(value, str)):
        raise ValueError(f"must be an integer, not {type(value).__name__}")
    return int(value)


# -- text sources -------------------------------------------------------------------------------------------


def parse_set(items: list[str] | tuple[str, ...]) -> dict[str, str]:
    """``["lr=1e-3", "hidden=64,64"]`` -> ``{"lr": "1e-3", "hidden": "64,64"}``."""
    out = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r} (e.g. --set hidden=64,64).")
        key, value = item.split("=", 1)
        out[key.strip().replace("-", "_")] = value.strip()
    return out


def load_file(path: str | Path) -> dict[str, Any]:
    """The table of a TOML or JSON config file (errors name the file)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"--config {path}: no such file.")
    text = p.read_text()
    if p.suffix == ".json":
        try:
            values = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"--config {path} is not valid JSON ({exc}).") from exc
    else:
        import tomllib

        try:
            values = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"--config {path} is not valid TOML ({exc}); use KEY = VALUE lines or a .json file."
                             ) from exc
    if not isinstance(values, dict):
        raise ValueError(f"--config {path} must hold a table of KEY = VALUE pairs, not a {type(values).__name__}.")
    return values


def build(cls: type, name: str, preset: dict[str, Any], config: Any = None,
          overrides: dict[str, Any] | None = None, *, config_usage: str = "config={{'{}': ...}}",
          overrides_usage: str = "{}=...") -> Any:
    """``cls`` from defaults < ``preset`` < ``config`` (an instance of ``cls``, a dict or None) < ``overrides``.

    ``config_usage`` and ``overrides_usage`` say how the user passes an option in ``config`` and ``overrides``
    (``"--set {}=..."`` on the command line), for the message that names a renamed option's new name.
    """
    values = dict(preset)
    if isinstance(config, cls):
        values.update(dataclasses.asdict(config))
    elif isinstance(config, dict):
        check_keys(cls, config, config_usage, f"{name} config")
        values.update(config)
    elif config is not None:
        raise TypeError(f"config must be a {name} Config, a dict or None, got {type(config).__name__}.")
    check_keys(cls, overrides or {}, overrides_usage, f"{name} config")
    values.update(overrides or {})
    return from_dict(cls, values, source=f"{name} config")


__all__ = ["Options", "RENAMED_IN", "added", "at_least", "build", "check_keys", "coerce", "from_dict", "load_file",
           "one_of", "parse_set", "positive", "rate_options", "to_dict", "unit_interval", "upgrade"]
