"""The names the intents brain can match, learnt from every place a client puts them.

Three sources, merged per request (first spelling wins, in this order):

1. enums in the tools' JSON schemas: a `name` / `area` / `floor` property (also inside
   `anyOf` / `oneOf` / `allOf` / array `items`, at any depth); a `todo_list` enum names to-do
   lists (Home Assistant's `todo_get_items` tool);
2. the overview of exposed entities that Home Assistant's LLM API writes into the
   instructions, a YAML list of `names` / `domain` / `areas` (the older shape, a mapping keyed
   by entity id, is read too);
3. the server's configuration.

Nothing here knows hassil: the brain turns a `HomeNames` into slot lists.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import yaml

from hearth.server.tools.schema import enum_properties, schema_enum, tool_name, tool_parameters

__all__ = ["schema_enum", "tool_name", "tool_parameters"]

#: Tool-schema property names whose enums hold entity names, areas, floors.
_ENTITY_KEYS = frozenset({"name"})
_AREA_KEYS = frozenset({"area"})
_FLOOR_KEYS = frozenset({"floor"})
#: Enum properties that name entities of one known domain.
_DOMAIN_KEYS = {"todo_list": "todo"}

#: Words in an entity name that tell its domain when no source says it; first hit wins, so
#: "Garage Light" is a light and "Garage Door" a cover. A bare "door" is read as a lock,
#: never as a cover: "open the front door" must not lock it.
_DOMAIN_HINTS: tuple[tuple[frozenset[str], str], ...] = (
    (frozenset({"scene"}), "scene"),
    (frozenset({"script"}), "script"),
    (frozenset({"light", "lights", "lamp", "lamps", "bulb", "bulbs", "lighting", "chandelier",
                "sconce", "sconces", "led", "leds", "spotlight", "spotlights"}), "light"),
    (frozenset({"fan", "fans"}), "fan"),
    (frozenset({"lock", "deadbolt"}), "lock"),
    (frozenset({"garage", "blind", "blinds", "shade", "shades", "curtain", "curtains",
                "shutter", "shutters", "awning", "gate", "window", "windows", "cover"}), "cover"),
    (frozenset({"door"}), "lock"),
    (frozenset({"valve", "sprinkler", "sprinklers"}), "valve"),
    (frozenset({"tv", "television", "speaker", "speakers", "player", "radio", "stereo",
                "soundbar"}), "media_player"),
    (frozenset({"thermostat", "heating", "ac", "hvac"}), "climate"),
    (frozenset({"vacuum", "roomba"}), "vacuum"),
    (frozenset({"mower"}), "lawn_mower"),
    (frozenset({"list"}), "todo"),
    (frozenset({"switch", "plug", "outlet", "socket", "power"}), "switch"),
)
#: Domains tried for a name no source and no word place: the generic on/off ones.
_UNKNOWN_DOMAINS = ("light", "switch")

_ENTITY_ID = re.compile(r"^(?P<domain>[a-z_][a-z0-9_]*)\.[a-z0-9_]+$")


@dataclass(frozen=True)
class KnownName:
    """An area or floor: the display name and the other names it answers to."""

    name: str
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class KnownEntity:
    """An entity the user can name."""

    #: Display name, spelt as the client spells it (what a tool call carries).
    name: str
    aliases: tuple[str, ...] = ()
    #: The entity's domain when a source says it; None when only guessed.
    domain: str | None = None
    areas: tuple[str, ...] = ()

    def match_domains(self) -> tuple[str, ...]:
        """Domains to offer the matcher: the known one, else guesses from the words."""
        if self.domain:
            return (self.domain,)
        return guess_domains(self.name, *self.aliases)


@dataclass(frozen=True)
class HomeNames:
    """Everything nameable in one request. Hashable: it keys the slot-list cache."""

    entities: tuple[KnownEntity, ...] = ()
    areas: tuple[KnownName, ...] = ()
    floors: tuple[KnownName, ...] = ()
    _domains: dict[str, set[str]] = field(default_factory=dict, compare=False, hash=False,
                                          repr=False)

    def __post_init__(self) -> None:
        for entity in self.entities:
            if entity.domain:
                for spoken in (entity.name, *entity.aliases):
                    self._domains.setdefault(spoken.casefold(), set()).add(entity.domain)

    def known_domains(self, name: str) -> frozenset[str]:
        """The domains sources gave for entities with this name (or alias)."""
        return frozenset(self._domains.get(name.casefold(), ()))

    def known_domain(self, name: str) -> str | None:
        """The domain of this entity name when sources give exactly one."""
        domains = self._domains.get(name.casefold(), ())
        return next(iter(domains)) if len(domains) == 1 else None

    def __bool__(self) -> bool:
        return bool(self.entities or self.areas or self.floors)


def guess_domains(*names: str) -> tuple[str, ...]:
    """Domains an entity name suggests by its words ("Kitchen Lamp" -> light)."""
    words = {w for n in names for w in re.findall(r"[a-z0-9]+", n.casefold())}
    for hints, domain in _DOMAIN_HINTS:
        if words & hints:
            return (domain,)
    return _UNKNOWN_DOMAINS


# --------------------------------------------------------------------------- merging


def merge_names(*parts: HomeNames) -> HomeNames:
    """One HomeNames from several; the first spelling of a name wins.

    An entity with an unknown domain folds into a same-named one whose domain is known;
    two known domains under one name stay two entities (a "Garage Door" cover and lock).
    """
    spelling: dict[str, str] = {}
    for part in parts:
        for entity in part.entities:
            spelling.setdefault(entity.name.casefold(), entity.name)

    known: dict[tuple[str, str | None], KnownEntity] = {}
    unknown: list[KnownEntity] = []
    for part in parts:
        for entity in part.entities:
            if entity.domain is None:
                unknown.append(entity)
                continue
            key = (entity.name.casefold(), entity.domain)
            known[key] = _merge_entity(known.get(key), entity, spelling)
    for entity in unknown:
        targets = [k for k in known if k[0] == entity.name.casefold()]
        if not targets:
            targets = [(entity.name.casefold(), None)]
        for key in targets:
            known[key] = _merge_entity(known.get(key), entity, spelling)

    areas = _merge_known([a for p in parts for a in p.areas]
                         + [KnownName(a) for p in parts for e in p.entities for a in e.areas])
    floors = _merge_known([f for p in parts for f in p.floors])
    return HomeNames(entities=tuple(known.values()), areas=areas, floors=floors)


def _merge_entity(old: KnownEntity | None, new: KnownEntity,
                  spelling: dict[str, str]) -> KnownEntity:
    name = spelling[new.name.casefold()]
    if old is None:
        return KnownEntity(name, _unique(new.aliases, exclude=name), new.domain, new.areas)
    return KnownEntity(
        name,
        _unique((*old.aliases, *new.aliases), exclude=name),
        old.domain or new.domain,
        _unique((*old.areas, *new.areas)),
    )


def _merge_known(items: Iterable[KnownName]) -> tuple[KnownName, ...]:
    merged: dict[str, KnownName] = {}
    for item in items:
        key = item.name.casefold()
        old = merged.get(key)
        if old is None:
            merged[key] = KnownName(item.name, _unique(item.aliases, exclude=item.name))
        else:
            merged[key] = KnownName(old.name, _unique((*old.aliases, *item.aliases),
                                                      exclude=old.name))
    return tuple(merged.values())


def _unique(values: Iterable[str], exclude: str | None = None) -> tuple[str, ...]:
    seen = {exclude.casefold()} if exclude else set()
    out = []
    for value in values:
        if value and value.casefold() not in seen:
            seen.add(value.casefold())
            out.append(value)
    return tuple(out)


# --------------------------------------------------------------------------- source 1: tools


def names_from_tools(tools: Iterable[Mapping[str, Any]]) -> HomeNames:
    """Names found in `enum`s of the tools' parameter schemas."""
    entities: list[KnownEntity] = []
    areas: list[KnownName] = []
    floors: list[KnownName] = []
    for tool in tools:
        params = tool_parameters(tool)
        for key, values in enum_properties(params):
            if key in _ENTITY_KEYS:
                entities.extend(KnownEntity(v) for v in values)
            elif key in _DOMAIN_KEYS:
                entities.extend(KnownEntity(v, domain=_DOMAIN_KEYS[key]) for v in values)
            elif key in _AREA_KEYS:
                areas.extend(KnownName(v) for v in values)
            elif key in _FLOOR_KEYS:
                floors.extend(KnownName(v) for v in values)
    return merge_names(HomeNames(tuple(entities), tuple(areas), tuple(floors)))


# --------------------------------------------------------------------------- source 2: overview

#: Start of a list item: "- names: Kitchen Light" (HA writes `names` first; others may not).
_ITEM_START = re.compile(r"^(?P<indent>[ \t]*)-[ \t]+(?P<key>names|domain|areas|state)[ \t]*:"
                         r"(?P<value>.*)$")
#: Start of the older shape: "light.kitchen:" then indented fields.
_ID_START = re.compile(r"^(?P<indent>[ \t]*)(?P<id>[a-z_][a-z0-9_]*\.[a-z0-9_]+)[ \t]*:[ \t]*$")
_FIELD = re.compile(r"^(?P<indent>[ \t]*)(?P<key>[A-Za-z_][A-Za-z0-9_]*)[ \t]*:(?P<value>.*)$")


def names_from_overview(text: str) -> HomeNames:
    """Entities (and their areas) from the exposed-entities overview in instructions.

    Home Assistant's Assist API ends its prompt with "Static Context: An overview of the
    areas and the devices in this smart home:" and a YAML list; clients paste it anywhere
    in their instructions, between other text. Rather than trusting a YAML parser on the
    whole text, each item is found line by line ("- names: ..." then fields indented
    under it) and only its scalars go through YAML (to unquote 'TV' or "Bob's Lamp").
    `names` and `areas` hold a display name and its aliases joined by ", ".
    """
    if not text or "names" not in text:
        return HomeNames()
    return _names_from_overview_cached(text)


@lru_cache(maxsize=32)
def _names_from_overview_cached(text: str) -> HomeNames:
    entities: list[KnownEntity] = []
    areas: list[KnownName] = []
    for fields in _overview_items(text.splitlines()):
        names = _split_names(fields.get("names"))
        if not names:
            continue
        domain = fields.get("domain")
        area_names = _split_names(fields.get("areas"))
        if area_names:
            # One area: its name, then its aliases.
            areas.append(KnownName(area_names[0], tuple(area_names[1:])))
        entities.append(KnownEntity(
            name=names[0],
            aliases=tuple(names[1:]),
            domain=domain.strip() if isinstance(domain, str) and domain.strip() else None,
            areas=tuple(area_names[:1]),
        ))
    return merge_names(HomeNames(tuple(entities), tuple(areas)))


def _overview_items(lines: list[str]) -> Iterator[dict[str, Any]]:
    current: dict[str, Any] | None = None
    field_indent = 0
    for line in lines:
        start = _ITEM_START.match(line)
        id_start = None if start else _ID_START.match(line)
        if start:
            if current is not None:
                yield current
            current = {start["key"]: _scalar(start["value"])}
            field_indent = len(start["indent"].expandtabs()) + 2
            continue
        if id_start:
            if current is not None:
                yield current
            current = {"domain": id_start["id"].split(".", 1)[0]}
            field_indent = len(id_start["indent"].expandtabs()) + 2
            continue
        if current is None:
            continue
        match = _FIELD.match(line)
        indent = len(line) - len(line.lstrip()) if line.strip() else -1
        if match and indent == field_indent:
            current.setdefault(match["key"], _scalar(match["value"]))
        elif indent > field_indent:
            continue  # nested (attributes) or a continuation line: not ours
        else:
            yield current
            current = None
    if current is not None:
        yield current


def _scalar(raw: str) -> Any:
    raw = raw.strip()
    if not raw:
        return None
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw
    return value if isinstance(value, str | int | float | bool) else raw


def _split_names(value: Any) -> list[str]:
    """"Kitchen Light, Cooker Light" -> ["Kitchen Light", "Cooker Light"]."""
    if value is None or isinstance(value, bool):
        return []
    if isinstance(value, list | tuple):
        return [str(v).strip() for v in value if str(v).strip()]
    return [part.strip() for part in str(value).split(", ") if part.strip()]


# --------------------------------------------------------------------------- source 3: config


_CONFIG_KEYS = ("name", "names", "aliases", "domain", "entity_id", "areas", "area")


def names_from_config(names: Iterable[str | Mapping[str, Any] | Any], areas: Iterable[str],
                      floors: Iterable[str]) -> HomeNames:
    """Names from the server's configuration.

    An entity is a plain name ("Kitchen Light") or a mapping with `name` (or `names`, a
    list or ", "-joined string whose first item is the display name), optional `aliases`,
    `domain` (or an `entity_id` it is read from) and `areas` / `area`; an object with those
    attributes (the server config's entity dataclass) is read the same way.
    """
    entities: list[KnownEntity] = []
    for item in names:
        if isinstance(item, str):
            if item.strip():
                entities.append(KnownEntity(item.strip()))
            continue
        if not isinstance(item, Mapping) and isinstance(getattr(item, "name", None), str):
            # A config dataclass (name, domain, areas, ...) reads like its mapping.
            item = {key: getattr(item, key) for key in _CONFIG_KEYS if hasattr(item, key)}
        if not isinstance(item, Mapping):
            raise TypeError(f"intents name entry must be a string or a mapping: {item!r}")
        spoken = _split_names(item.get("name")) + _split_names(item.get("names"))
        spoken += _split_names(item.get("aliases"))
        if not spoken:
            raise ValueError(f"intents name entry without a name: {dict(item)!r}")
        domain = item.get("domain")
        entity_id = item.get("entity_id")
        if not domain and isinstance(entity_id, str) and (m := _ENTITY_ID.match(entity_id)):
            domain = m["domain"]
        entity_areas = _split_names(item.get("areas")) + _split_names(item.get("area"))
        entities.append(KnownEntity(spoken[0], tuple(spoken[1:]),
                                    str(domain) if domain else None, tuple(entity_areas)))
    return merge_names(HomeNames(
        tuple(entities),
        tuple(KnownName(a) for a in areas if a.strip()),
        tuple(KnownName(f) for f in floors if f.strip()),
    ))
