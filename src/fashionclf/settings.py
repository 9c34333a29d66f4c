"""A training setting is declared once, as a field of TrainConfig whose metadata holds the rest of what is said of it:
its help, the values it may take, its group, and the report's words. The check of a value, the recipe's sentence in
the report (here) and the `train` option (cli.py) are all made from that declaration.

Nothing here imports torch: the command line builds its options from these declarations at every start."""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import MISSING, Field, dataclass, field, fields
from functools import cache
from typing import Any

from fashionclf.errors import FashionClfError

# The report's words for a setting's value: a template ("weight decay {:g}") said only of a value that is set (not 0,
# False or empty), or a function of the value and every setting that returns the words, or None for none.
Words = str | Callable[[Any, Mapping[str, Any]], str | None]

# How a value of the wrong type is described, for a config.json written by hand.
KINDS = {bool: "true or false", int: "a whole number", float: "a number", str: "a name", dict: "an object"}


@dataclass(frozen=True)
class Setting:
    """What the command line, the checks and the report say of one setting of TrainConfig."""

    help: str
    group: str  # the panel of `train --help`; the report says each group's words together, in the order declared
    bound: tuple[Callable[[Any], bool], str] | None = None  # what a number must satisfy, and that in words
    choices: Mapping[str, str] | tuple[str, ...] = ()  # the names it takes (a mapping: with the report's words)
    default_words: str = ""  # [default: ...] in the help where the default value alone would mislead
    words: Words = ""
    item: Callable[[str], tuple[str, Any]] | None = None  # a mapping's option: repeated, one NAME=VALUE item each
    aliases: tuple[str, ...] = ()  # other names of the option
    path: bool = False  # the option takes a file or folder; the setting keeps it as a string


def setting(default: Any, help: str, group: str, **declared: Any) -> Any:
    """A TrainConfig field: `default` and a Setting of the rest."""
    metadata = {"setting": Setting(help, group, **declared)}
    if isinstance(default, dict):  # a mutable default: each config gets its own copy
        return field(default_factory=lambda: dict(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def option_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def declared(cls: type) -> Iterator[tuple[Field, Setting]]:
    """The settings of a dataclass, in the order declared."""
    for each in fields(cls):
        yield each, each.metadata["setting"]


def declaration(cls: type, name: str) -> Setting:
    return next(each for field_, each in declared(cls) if field_.name == name)


def default_of(each: Field) -> Any:
    return each.default_factory() if each.default is MISSING and each.default_factory is not MISSING else each.default


@cache
def kinds(cls: type) -> dict[str, tuple[type, bool]]:
    """Each setting's type, and whether None is also a value of it ("int | None" -> (int, True))."""
    resolved = {}
    for name, hint in typing.get_type_hints(cls).items():
        args = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
        kind = next(arg for arg in args if arg is not type(None))
        resolved[name] = (typing.get_origin(kind) or kind, type(None) in args)
    return resolved


def check(cls: type, name: str, value: Any) -> None:
    """The value's type, bound or name, as its declaration states them; a value read from a JSON file may be any."""
    kind, optional = kinds(cls)[name]
    if value is None and optional:
        return
    declared_as = declaration(cls, name)
    bound = declared_as.bound
    if not _is_a(kind, value):
        words = bound[1] if bound and kind is float else KINDS[kind]  # float bounds say "number" themselves
        raise FashionClfError(f"{option_name(name)} must be {words}, got {value!r}")
    if bound and not bound[0](value):  # NaN fails every comparison, so every bound
        raise FashionClfError(f"{option_name(name)} must be {bound[1]}, got {value!r}")
    if declared_as.choices and value not in declared_as.choices:
        known = ", ".join(declared_as.choices)
        raise FashionClfError(f"{option_name(name)}: unknown {name.replace('_', ' ')} {value!r}; known: {known}")


def _is_a(kind: type, value: Any) -> bool:
    if isinstance(value, bool):
        return kind is bool
    return isinstance(value, int | float) if kind is float else isinstance(value, kind)


def in_words(cls: type, recorded: Mapping[str, Any]) -> str:
    """The settings a run recorded, in the report's words: each group's in a clause, the groups in the order
    declared. A setting the record lacks (a run of an older version) is said at its default."""
    values = {each.name: recorded.get(each.name, default_of(each)) for each in fields(cls)}
    clauses: dict[str, list[str]] = {}
    for each, declared_as in declared(cls):
        if said := _said(declared_as.words, values[each.name], values):
            clauses.setdefault(declared_as.group, []).append(said)
    return "; ".join(", ".join(words) for words in clauses.values())


def _said(words: Words, value: Any, values: Mapping[str, Any]) -> str | None:
    if callable(words):
        return words(value, values)
    return words.format(value) if words and value else None
