"""One help layout for every ``pathwise`` command, written from the options' dataclasses.

tyro parses the command line; the ``--help`` text is written here so that every command (the top level,
``train``, ``evaluate``, ``solve``, ``estimators``, ``list``) reads the same way whatever the terminal or the
tyro version::

    usage: pathwise COMMAND [options]

    What the command does.

    options:
      --flag METAVAR          What the option is. (default: value)

Each option's text is its field's docstring (read with ``docstring_parser``, as tyro does) with the reST
markup taken out; a value that came from somewhere other than the field's default (a preset, ``--config``,
``--set``, a flag) is shown with where it came from.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import textwrap
import types
import typing
from typing import Any, Iterable, Mapping, Sequence

#: Width of the option column; longer flags put their text on the next line.
FLAG_WIDTH = 26


def width() -> int:
    """Text width: the terminal's, kept between 70 and 100 columns."""
    return max(70, min(100, shutil.get_terminal_size((100, 24)).columns))


def plain(text: str) -> str:
    """``text`` without reST markup: ``code`` and `code` lose their backticks, :role:`x` becomes x."""
    text = re.sub(r":[a-z]+:`~?([^`]+)`", r"\1", text)
    text = re.sub(r"``([^`]+)``", r"\1", text)
    return re.sub(r"`([^`]+)`", r"\1", text)


def section(title: str, entries: Iterable[tuple[str, str]]) -> str:
    """A titled block of ``(left column, text)`` rows, the text wrapped beside the left column."""
    w = width()
    lines = [f"{title}:"]
    for left, text in entries:
        body = textwrap.wrap(plain(" ".join(text.split())), w - FLAG_WIDTH - 2) or [""]
        if len(left) <= FLAG_WIDTH - 4:
            lines.append(f"  {left:<{FLAG_WIDTH - 2}}{body[0]}".rstrip())
            body = body[1:]
        else:
            lines.append(f"  {left}")
        lines += [" " * FLAG_WIDTH + b for b in body]
    return "\n".join(lines)


def page(usage: str, description: str, sections: Sequence[str], footer: str = "") -> str:
    """A whole help page: usage line, description, sections, an optional closing line."""
    parts = [f"usage: {usage}", textwrap.fill(plain(" ".join(description.split())), width())]
    parts += [s for s in sections if s]
    if footer:
        parts.append(textwrap.fill(plain(footer), width()))
    return "\n\n".join(parts) + "\n"


# -- options of a dataclass ---------------------------------------------------------------------------------


def field_docs(cls: type) -> dict[str, str]:
    """Each field's docstring (the string under it), base classes first so a subclass's own text wins."""
    import docstring_parser

    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            params = docstring_parser.parse_from_object(klass).params
        except (OSError, TypeError):  # no source (a class built at run time)
            continue
        docs.update({p.arg_name: p.description or "" for p in params})
    return docs


def metavar(tp: Any) -> str:
    """How an option's value is written: INT, FLOAT, STR, {a,b}, INT [INT ...]; '' for a flag."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        return metavar(rest[0]) if len(rest) == 1 else "|".join(metavar(a) for a in rest)
    if origin is typing.Annotated:
        return metavar(args[0])
    if origin is typing.Literal:
        return "{" + ",".join(str(a) for a in args) + "}"
    if origin is tuple:
        one = metavar(args[0]) if args else "STR"
        return f"{one} [{one} ...]"
    if tp is bool:
        return ""
    return {int: "INT", float: "FLOAT", str: "STR"}.get(tp, getattr(tp, "__name__", str(tp)).upper())


def show_value(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (tuple, list)):
        return " ".join(show_value(v) for v in value) if value else "none"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def options(cls: type, values: Any = None, *, sources: Mapping[str, str] | None = None,
            positional: Sequence[str] = (), metavars: Mapping[str, str] | None = None) -> list[tuple[str, str]]:
    """``(flag, text)`` rows for the fields of dataclass ``cls``.

    ``values`` (an instance) gives the values shown (default: the fields' defaults); ``sources`` names where a
    value came from (``{"horizon": "the Pendulum-v1 preset"}``), shown beside it. Fields in ``positional``
    are shown by their metavar, without dashes.
    """
    docs, hints = field_docs(cls), typing.get_type_hints(cls, include_extras=False)
    sources, metavars = dict(sources or {}), dict(metavars or {})
    rows = []
    for f in dataclasses.fields(cls):
        text = docs.get(f.name, "").strip()
        if f.name in positional:
            rows.append((metavars.get(f.name, f.name.upper()), text))
            continue
        flag = "--" + f.name.replace("_", "-")
        if hints[f.name] is bool and f.name.startswith("no_"):
            pass  # --no-preset: one flag, never --no-no-preset
        elif hints[f.name] is bool:
            flag = f"{flag}, --no-{f.name.replace('_', '-')}"
        else:
            flag = f"{flag} {metavars.get(f.name, metavar(hints[f.name]))}"
        value = getattr(values, f.name) if values is not None else _default(f)
        rows.append((flag, text + _value_note(value, sources.get(f.name))))
    return rows


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _value_note(value: Any, source: str | None) -> str:
    if value is dataclasses.MISSING:
        return " (required)"
    if source is not None:
        return f" ({show_value(value)}, from {source})"
    if value is None or value == ():
        return ""  # the field's text says what leaving it out means
    return f" (default: {show_value(value)})"


def has_help(argv: Sequence[str]) -> bool:
    return any(a in ("-h", "--help") for a in argv)


__all__ = ["field_docs", "has_help", "metavar", "options", "page", "plain", "section", "show_value", "width"]
