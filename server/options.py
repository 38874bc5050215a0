"""How a part of the server declares its options: once, as fields of a frozen dataclass.

`option(default, doc, check, unit=...)` makes a dataclass field that carries the option's
YAML default, its documentation, its unit and its validator. `schema_of(cls)` derives the
voluptuous schema of a section from those fields, so the value a YAML file gives, the
default that `cls()` builds in code and tests, and the line in docs/configuration.md all
come from one declaration. `tagged(table)` is a section whose `type` key picks one of
several option classes (engines, brains, turn detection). `server/config.py` composes the
parts; each part (an engine, a transport, discovery) keeps its own options next to it, in a
module light enough to import without the part's libraries.

Paths in a file are relative to the file's folder: `relative_path` reads that folder from
`base_dir_for`, which `server/config.py` sets while it validates.
"""

from __future__ import annotations

import contextlib
import contextvars
import ipaddress
from collections.abc import Callable, Iterator, Mapping
from dataclasses import Field, dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any

import voluptuous as vol

#: The default of an option that has none (the file must set it).
REQUIRED = vol.UNDEFINED

_META = "hearth.option"
_BASE_DIR: contextvars.ContextVar[Path | None] = contextvars.ContextVar("hearth_config_base_dir", default=None)


@dataclass(frozen=True)
class OptionSpec:
    """What one option field declares (kept in the field's metadata)."""

    #: The default as a YAML file would write it ({} for a section, [] for a list).
    default: Any
    #: One line: what the option does (the docs hold the longer story).
    doc: str
    #: The voluptuous validator; it also converts (a list to a tuple, a path to a `Path`).
    check: Any
    #: The unit, exactly as the docs' Unit column writes it ("ms", "seconds", "threads").
    unit: str | None = None


def option(default: Any, doc: str, check: Any, *, unit: str | None = None, secret: bool = False) -> Any:
    """A dataclass field that is a config option.

    `default` is the YAML form; code that builds the class without the file (`cls()`) gets
    the same value as the file would, converted by `check` ([] -> (), {} -> a read-only map).
    A `secret` (a password, a key, a URL that may hold one) stays out of the repr.
    """
    spec = OptionSpec(default, doc, check, unit)
    metadata = {_META: spec}
    if default is REQUIRED:
        return field(metadata=metadata, repr=not secret)
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: vol.Schema(check)(default), metadata=metadata, repr=not secret)
    return field(default=default, metadata=metadata, repr=not secret)


def section(cls: type, doc: str) -> Any:
    """A field holding a nested section of options; `{}` (every default) when the file omits it."""
    spec = OptionSpec({}, doc, schema_of(cls))
    return field(default_factory=cls, metadata={_META: spec})


def tag(name: str) -> Any:
    """The `type` field of a member of a `tagged` union: fixed to `name`."""
    return option(name, "", name)


def spec_of(f: Field[Any]) -> OptionSpec | None:
    """The declaration of a dataclass field, or None for a field that is not an option."""
    return f.metadata.get(_META)


def schema_of(cls: type) -> vol.All:
    """The voluptuous schema of a section: one key per option field; builds `cls`."""
    keys: dict[vol.Marker, Any] = {}
    for f in fields(cls):
        spec = spec_of(f)
        if spec is None:
            continue  # not read from the file (the config's `source`)
        if spec.default is REQUIRED:
            marker: vol.Marker = vol.Required(f.name, description=spec.doc)
        else:
            marker = vol.Optional(f.name, default=spec.default, description=spec.doc)
        marker.unit = spec.unit  # type: ignore[attr-defined] - read back by `walk`
        keys[marker] = spec.check
    return vol.All(keys, lambda values: cls(**values))


class Tagged:
    """A section whose `type` key picks its option class from a table (a tagged union).

    Adding a kind (an engine, a brain) is one option class and one entry in the table.
    Each class declares `type: Literal[...] = tag("name")`.
    """

    def __init__(self, table: Mapping[str, type], default: str, doc: str) -> None:
        self.table = dict(table)
        self.default = default
        self.doc = doc
        self.choices = {name: vol.Schema(schema_of(cls)) for name, cls in self.table.items()}

    def __call__(self, value: Any) -> Any:
        if not isinstance(value, dict):
            raise vol.Invalid("expected a dictionary")  # as voluptuous says for the other sections
        kind = value.get("type", self.default)
        if kind not in self.choices:
            raise vol.Invalid(f"expected one of {', '.join(self.choices)} (got {kind!r})", path=["type"])
        return self.choices[kind](value)


def tagged(table: Mapping[str, type], default: str, type_doc: str) -> Tagged:
    """The validator of a section that is one member of `table`, picked by its `type`.

    Use it as an option's check: `option({}, "the speech engine", tagged(ENGINES, "cascade", ...))`.
    """
    return Tagged(table, default, type_doc)


# ----------------------------------------------------------------------------- validators


def integer(low: int | None = None, high: int | None = None) -> Callable[[Any], int]:
    """An int (YAML `true` is not a count), optionally within [low, high]."""
    def validate(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise vol.Invalid("expected int")
        return vol.Range(min=low, max=high)(value)

    return validate


def number(low: float | None = None, high: float | None = None) -> Callable[[Any], float]:
    """An int or a float, as a float, optionally within [low, high]."""
    def validate(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise vol.Invalid("expected a number")
        return vol.Range(min=low, max=high)(float(value))

    return validate


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise vol.Invalid("expected true or false")
    return value


def string(value: Any) -> str:
    if not isinstance(value, str):
        raise vol.Invalid("expected a string")
    return value


def non_empty(value: Any) -> str:
    """A string that is not blank."""
    if not string(value).strip():
        raise vol.Invalid("must not be empty")
    return value


def one_of(*choices: str, ignore_case: bool = False) -> Callable[[Any], str]:
    def validate(value: Any) -> str:
        text = string(value).lower() if ignore_case else string(value)
        if text not in choices:
            raise vol.Invalid(f"expected one of {', '.join(choices)} (got {value!r})")
        return text

    return validate


def list_of(item: Any) -> vol.All:
    """A YAML list, as a tuple (a bare class in a schema is an isinstance check: pass a function)."""
    return vol.All([item], lambda items: tuple(items))


def mapping_of(key: Any, value: Any) -> vol.All:
    """A free-form YAML mapping, read-only."""
    return vol.All({key: value}, lambda items: MappingProxyType(items))


class Maybe:
    """`null` or `inner`; unlike `vol.Any(None, …)` the error is the inner one, not "not None"."""

    def __init__(self, inner: Any) -> None:
        self.inner = vol.Schema(inner)

    def __call__(self, value: Any) -> Any:
        return None if value is None else self.inner(value)


@contextlib.contextmanager
def base_dir_for(base_dir: Path) -> Iterator[None]:
    """Resolve relative paths against `base_dir` while validating (the config file's folder)."""
    token = _BASE_DIR.set(base_dir)
    try:
        yield
    finally:
        _BASE_DIR.reset(token)


def relative_path(value: Any) -> Path:
    """A path (`~` expanded), relative to the config file's folder (else the working directory)."""
    base = _BASE_DIR.get() or Path.cwd()
    return (base / Path(non_empty(value)).expanduser()).resolve()


def existing_file(value: Any) -> Path:
    path = relative_path(value)
    if not path.is_file():
        raise vol.Invalid(f"file not found: {path}")
    return path


def is_loopback(host: str) -> bool:
    """True for an address only this machine reaches (a host name is assumed reachable)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# ----------------------------------------------------------------------------- documentation


@dataclass(frozen=True)
class OptionDoc:
    #: Dotted key, e.g. `engine.stt.beam_size`.
    path: str
    #: The default (REQUIRED where the option has none).
    default: Any
    description: str
    #: The unit as the docs write it, or None.
    unit: str | None = None


def walk(node: Any, prefix: str = "") -> Iterator[OptionDoc]:
    """Every option under a schema node, in declaration order (a key may repeat across kinds)."""
    if isinstance(node, vol.Schema):
        yield from walk(node.schema, prefix)
    elif isinstance(node, (vol.All, vol.Any)):
        for inner in node.validators:
            yield from walk(inner, prefix)
    elif isinstance(node, Maybe):
        yield from walk(node.inner, prefix)
    elif isinstance(node, Tagged):
        yield OptionDoc(f"{prefix}.type" if prefix else "type", node.default, node.doc)
        for inner in node.choices.values():
            yield from walk(inner, prefix)
    elif isinstance(node, dict):
        for marker, value in node.items():
            key = marker.schema if isinstance(marker, vol.Marker) else marker
            if not isinstance(key, str):
                continue  # a free-form mapping such as engine.tts.voices
            path = f"{prefix}.{key}" if prefix else key
            default = getattr(marker, "default", REQUIRED)
            yield OptionDoc(
                path,
                REQUIRED if default is REQUIRED else default(),
                getattr(marker, "description", None) or "",
                getattr(marker, "unit", None),
            )
            yield from walk(value, path)

