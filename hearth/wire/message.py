"""The base of every JSON control message: frozen dataclass, one ``type``, a strict codec.

Each message family lives in its own module and subclasses :class:`Message`
with a ``type`` class constant. Registration is automatic, so
:func:`decode_message` can turn any payload back into the right class.

Rules of the codec (see docs/mqtt-protocol.md):

* encoders omit fields that are ``None``;
* decoders ignore keys they do not know (a newer peer may send more);
* a missing required field, a wrong JSON type or a bad value raises
  :class:`~hearth.wire.errors.ProtocolError`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import types
import typing
from typing import Any, ClassVar, TypeVar, Union, get_args, get_origin

from .errors import ProtocolError, UnknownMessageType

M = TypeVar("M", bound="Message")

#: Every registered message class by its ``type`` string.
MESSAGE_TYPES: dict[str, type["Message"]] = {}

# Payloads larger than this are refused before JSON parsing (control events are tiny).
MAX_JSON_BYTES = 64 * 1024
#: Deepest nesting of arrays and objects a payload may have. The deepest message of this
#: protocol is 3 levels; a limit well above that leaves room for newer peers while keeping
#: Python's recursion (the JSON parser's, and every walk over the decoded value) far away.
MAX_JSON_DEPTH = 32


class Message:
    """Base class for JSON control messages. Subclasses are frozen dataclasses."""

    type: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        message_type = cls.__dict__.get("type")
        if message_type is None:
            return  # an abstract intermediate class
        if message_type in MESSAGE_TYPES and MESSAGE_TYPES[message_type] is not cls:
            raise TypeError(f"message type {message_type!r} registered twice")
        MESSAGE_TYPES[message_type] = cls

    # -- dict form ---------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready dict, with ``type`` first and ``None`` fields left out."""
        data: dict[str, Any] = {"type": self.type}
        data.update(_encode_fields(self))
        return data

    @classmethod
    def from_dict(cls: type[M], data: Any) -> M:
        """Build the message from its dict form, ignoring unknown keys."""
        if not isinstance(data, dict):
            raise ProtocolError("message is not a JSON object", type=getattr(cls, "type", None))
        found = data.get("type")
        if found != cls.type:
            raise ProtocolError(f"expected type {cls.type!r}, got {found!r}", type=found)
        return _decode_fields(cls, data, where=cls.type)

    # -- bytes form --------------------------------------------------------
    def to_json(self) -> bytes:
        """Compact UTF-8 JSON for an MQTT payload."""
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False).encode()


def encode_message(message: Message) -> bytes:
    """The MQTT payload for ``message``."""
    return message.to_json()


def decode_message(payload: bytes | str, *, topic: str | None = None) -> Message:
    """Parse any registered message from an MQTT payload.

    Raises :class:`UnknownMessageType` for a valid event of an unknown type
    and :class:`ProtocolError` for everything else that is wrong.
    """
    data = parse_json_object(payload, topic=topic)
    message_type = data.get("type")
    if not isinstance(message_type, str):
        raise ProtocolError("message has no string 'type'", topic=topic, payload=_excerpt(payload))
    cls = MESSAGE_TYPES.get(message_type)
    if cls is None:
        raise UnknownMessageType(f"unknown message type {message_type!r}", topic=topic, type=message_type)
    try:
        return cls.from_dict(data)
    except ProtocolError as err:
        if topic is not None:
            err.context.setdefault("topic", topic)
        err.context.setdefault("payload", _excerpt(payload))
        raise


def parse_json_object(
    payload: bytes | str,
    *,
    topic: str | None = None,
    max_bytes: int = MAX_JSON_BYTES,
    max_depth: int = MAX_JSON_DEPTH,
) -> dict[str, Any]:
    """Decode a payload that must be one JSON object, within a size and a nesting limit.

    Every JSON decoder of the protocol goes through here. Whatever the payload, the only
    exception is :class:`ProtocolError`: a 60 kB ``[[[[...`` would otherwise raise
    ``RecursionError`` out of :func:`json.loads` (and kill the thread that called it), and
    ``NaN``/``Infinity`` (or ``1e999``, which Python reads as infinity) are not JSON numbers.
    Families with bigger messages pass their own ``max_bytes``/``max_depth``.
    """
    if isinstance(payload, (bytes, bytearray, memoryview)):
        if len(payload) > max_bytes:
            raise ProtocolError("JSON payload too large", topic=topic, size=len(payload), limit=max_bytes)
        try:
            text = bytes(payload).decode("utf-8")
        except UnicodeDecodeError as err:
            raise ProtocolError("payload is not UTF-8", topic=topic, payload=_excerpt(payload)) from err
    elif isinstance(payload, str):
        if len(payload) > max_bytes:
            raise ProtocolError("JSON payload too large", topic=topic, size=len(payload), limit=max_bytes)
        text = payload
    else:
        raise ProtocolError(f"payload must be bytes or text, not {type(payload).__name__}", topic=topic)
    if too_deep(text, max_depth):
        raise ProtocolError("JSON nested too deeply", topic=topic, limit=max_depth, payload=_excerpt(payload))
    try:
        data = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except (ValueError, RecursionError) as err:  # ProtocolError is a ValueError too
        if isinstance(err, ProtocolError):
            if topic is not None:
                err.context.setdefault("topic", topic)
            raise
        raise ProtocolError(f"payload is not JSON: {err}", topic=topic, payload=_excerpt(payload)) from err
    if not isinstance(data, dict):
        raise ProtocolError("payload is not a JSON object", topic=topic, payload=_excerpt(payload))
    return data


_STRUCTURE = re.compile(r'[\\"\[\]{}]')


def too_deep(text: str, limit: int) -> bool:
    """Whether arrays/objects in ``text`` nest deeper than ``limit`` (brackets in strings do not count).

    Linear in the number of brackets, quotes and backslashes, and it never recurses. It
    does not validate: the parser refuses malformed JSON afterwards.
    """
    if text.count("[") + text.count("{") <= limit:
        return False
    depth = 0
    in_string = False
    escaped = -1  # the index of the character the last backslash escapes
    for match in _STRUCTURE.finditer(text):
        char, at = match.group(), match.start()
        if in_string:
            if at == escaped:
                continue
            if char == "\\":
                escaped = at + 1
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > limit:
                return True
        elif char in "]}":
            depth -= 1
    return False


def _refuse_constant(name: str) -> Any:
    raise ProtocolError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ProtocolError(f"number {text[:20]!r} is out of range")
    return value


def _excerpt(payload: bytes | str, limit: int = 120) -> str:
    if isinstance(payload, (bytes, bytearray, memoryview)):
        payload = bytes(payload[:limit]).decode("utf-8", "replace")
    return payload[:limit]


# -- field codec --------------------------------------------------------------
def _encode_fields(obj: Any) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for field in dataclasses.fields(obj):
        value = getattr(obj, field.name)
        if value is None:
            continue
        data[field.name] = _encode_value(value)
    return data


def _encode_value(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _encode_fields(value)
    if isinstance(value, (list, tuple)):
        return [_encode_value(item) for item in value]
    if isinstance(value, dict):
        return {key: _encode_value(item) for key, item in value.items()}
    return value


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    hints = _HINTS.get(cls)
    if hints is None:
        hints = typing.get_type_hints(cls)
        _HINTS[cls] = hints
    return hints


def _decode_fields(cls: type[Any], data: dict[str, Any], *, where: str) -> Any:
    hints = _hints(cls)
    kwargs: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        if not field.init:
            continue
        if field.name not in data or data[field.name] is None:
            required = (
                field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
            )
            if required:
                raise ProtocolError(f"missing field {field.name!r}", type=where)
            continue
        kwargs[field.name] = _decode_value(data[field.name], hints[field.name], f"{where}.{field.name}")
    try:
        return cls(**kwargs)
    except ProtocolError as err:
        err.context.setdefault("type", where)
        raise
    except (TypeError, ValueError) as err:
        raise ProtocolError(str(err), type=where) from err


def _decode_value(value: Any, annotation: Any, where: str) -> Any:
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        options = [arg for arg in get_args(annotation) if arg is not type(None)]
        if len(options) == 1:
            return _decode_value(value, options[0], where)
        errors = []
        for option in options:
            try:
                return _decode_value(value, option, where)
            except ProtocolError as err:
                errors.append(str(err))
        raise ProtocolError(f"bad value for {where}: {'; '.join(errors)}")
    if annotation is Any:
        return value
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ProtocolError(f"{where} must be a boolean, got {type(value).__name__}")
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ProtocolError(f"{where} must be an integer, got {type(value).__name__}")
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                number = float(value)
            except OverflowError:  # an integer with hundreds of digits
                number = math.inf
            if not math.isfinite(number):
                raise ProtocolError(f"{where} must be a finite number")
            return number
        raise ProtocolError(f"{where} must be a number, got {type(value).__name__}")
    if annotation is str:
        if isinstance(value, str):
            return value
        raise ProtocolError(f"{where} must be a string, got {type(value).__name__}")
    if origin in (tuple, list):
        if not isinstance(value, list):
            raise ProtocolError(f"{where} must be a list, got {type(value).__name__}")
        args = get_args(annotation)
        item_type = args[0] if args else Any
        items = [_decode_value(item, item_type, f"{where}[]") for item in value]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ProtocolError(f"{where} must be an object, got {type(value).__name__}")
        args = get_args(annotation)
        value_type = args[1] if len(args) == 2 else Any
        return {str(key): _decode_value(item, value_type, f"{where}.{key}") for key, item in value.items()}
    if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise ProtocolError(f"{where} must be an object, got {type(value).__name__}")
        return _decode_fields(annotation, value, where=where)
    raise TypeError(f"unsupported field annotation {annotation!r} at {where}")  # a bug in a message class
