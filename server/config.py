"""The house server's configuration: the parts' options composed into one file format.

Each part declares its own options once, next to it, as a frozen dataclass whose fields
carry unit, default, doc and validator (`server/options.py`): the cascade engine and its
stages in `engines/cascade/options.py`, the satellite transport in `mqtt/options.py`,
zeroconf in `discovery_options.py`. This module adds the options that belong to the server
itself (`server`, `log_level`) and the defaults of every new session, and composes them:
one voluptuous schema, derived from those classes, validates the YAML file and builds the
typed result, so no other module re-checks a value or re-states a default. `engine.type`
picks the engine from `ENGINES` (and the cascade's `engine.brain.type` picks its brain from
`BRAINS`): adding one is an option class and a table entry. `documented_options()` walks
the schema so a test can hold `docs/configuration.md` to it.

Precedence, highest first: `overrides` (the CLI's flags), the file, the environment
(`HEARTH_API_KEY`, only where the file sets no `server.api_key`), the defaults.
Relative paths in a file are relative to that file's folder, so a config keeps working
whatever directory the service starts in.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal

import voluptuous as vol
import yaml

from .discovery_options import DiscoveryConfig
from .engines.cascade.options import CascadeConfig
from .engines.relay.options import RelayConfig
from .mqtt.options import EmbeddedBrokerConfig, MqttConfig, MqttTlsConfig, SatelliteSettings
from .mqtt.options import account_errors as mqtt_account_errors
from .options import (
    REQUIRED,
    Maybe,
    existing_file,
    OptionDoc,
    base_dir_for,
    boolean,
    integer,
    is_loopback,
    list_of,
    non_empty,
    number,
    one_of,
    option,
    schema_of,
    section,
    string,
    tag,
    tagged,
    walk,
)
from .protocol.voices import MAX_SPEED, MIN_SPEED, VOICES
from .session.limits import SessionLimits

API_KEY_ENV = "HEARTH_API_KEY"

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")

DEFAULT_INSTRUCTIONS = "You are Hearth, a helpful voice assistant for the home. Keep answers short."

__all__ = [
    "API_KEY_ENV", "ENGINES", "REQUIRED", "ConfigError", "DiscoveryConfig", "EmbeddedBrokerConfig",
    "EngineConfig", "MqttConfig", "MqttTlsConfig", "OptionDoc", "SatelliteSettings", "SemanticVadConfig",
    "ServerConfig", "ServerOptions", "ServerVadConfig", "SessionDefaults", "TranscriptionConfig",
    "config_schema", "documented_options", "load_config",
]  # fmt: skip


class ConfigError(Exception):
    """A configuration that cannot be used; the message names the file and each bad key."""

    def __init__(self, errors: list[tuple[str, str]], source: Path | None = None) -> None:
        self.errors = tuple(errors)
        self.source = source
        prefix = f"{source}: " if source is not None else ""
        super().__init__("\n".join(f"{prefix}{key}: {msg}" if key else f"{prefix}{msg}" for key, msg in errors))


def _origin(value: Any) -> str:
    if string(value) != "*" and not re.fullmatch(r"https?://[^/\s]+", value):
        raise vol.Invalid(f"expected an origin like https://example.org (scheme and host, no path), got {value!r}")
    return value


def _host_name(value: Any) -> str:
    if string(value) != "*" and not re.fullmatch(r"\.?[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.?", value):
        raise vol.Invalid(f"expected a host name like hearth.home.arpa (no scheme or port), got {value!r}")
    return value.lower()


# ----------------------------------------------------------------------------- the server itself


_LIMITS = SessionLimits()


@dataclass(frozen=True)
class LimitsConfig:
    """Per-session limits (`hearth.server.session.limits.SessionLimits` holds the defaults)."""

    max_buffer_s: float = option(_LIMITS.max_buffer_s, "longest input audio buffer without a commit",
                                 number(1), unit="seconds")
    max_item_audio_s: float = option(_LIMITS.max_item_audio_s, "longest audio in one client-created item",
                                     number(1), unit="seconds")
    max_item_text_chars: int = option(_LIMITS.max_item_text_chars, "most text in one client-created item",
                                      integer(1), unit="characters")
    max_side_responses: int = option(_LIMITS.max_side_responses, "out-of-band responses running at once",
                                     integer(1), unit="responses")
    max_tools: int = option(_LIMITS.max_tools, "function tools one session may declare", integer(1), unit="tools")
    max_tool_bytes: int = option(_LIMITS.max_tool_bytes, "JSON size of one tool definition", integer(256),
                                 unit="bytes")
    max_speculation_s: float = option(_LIMITS.max_speculation_s, "longest audio transcribed speculatively at a pause",
                                      number(0), unit="seconds")
    large_append_s: float = option(_LIMITS.large_append_s, "appends longer than this have their VAD run off the "
                                   "event loop", number(0.1), unit="seconds")
    max_context_items: int = option(_LIMITS.max_context_items, "newest conversation items an engine sees per response",
                                    integer(2), unit="items")
    responses_per_minute: int = option(_LIMITS.responses_per_minute, "`response.create` requests one session may "
                                       "send per minute; 0 = no limit", integer(0), unit="requests")

    def session_limits(self) -> SessionLimits:
        return SessionLimits(**{f.name: getattr(self, f.name) for f in fields(SessionLimits)})


@dataclass(frozen=True)
class TlsOptions:
    """HTTPS and WSS on the server itself (or a reverse proxy in front: docs/webrtc.md)."""

    cert: Path | None = option(None, "PEM certificate (chain) file; with key set, serve HTTPS and WSS",
                               Maybe(existing_file))
    key: Path | None = option(None, "PEM private key file of the certificate", Maybe(existing_file))

    @property
    def enabled(self) -> bool:
        return self.cert is not None and self.key is not None


@dataclass(frozen=True)
class ServerOptions:
    host: str = option("127.0.0.1", "bind address", non_empty)
    port: int = option(8000, "port of the HTTP API", integer(1, 65535), unit="TCP port")
    api_key: str | None = option(None, f"bearer token clients must send; env {API_KEY_ENV}", Maybe(non_empty),
                                 secret=True)
    allow_unauthenticated: bool = option(False, "permit no api_key on a non-loopback bind", boolean)
    max_session_duration_s: int = option(3600, "a session ends with session_expired after this", integer(1),
                                         unit="seconds")
    cors_origins: tuple[str, ...] = option([], "origins whose browser pages may open Realtime WebSockets",
                                           list_of(_origin))
    #: The DNS-rebinding defence of a keyless server (server/transports/auth.py).
    allowed_hosts: tuple[str, ...] = option([], "extra Host names a server without api_key answers to",
                                            list_of(_host_name))
    tool_timeout_s: float = option(2.5, "a server-side tool (Home Assistant's) that takes longer is apologised for",
                                   number(0.1, 60), unit="seconds")
    tools_for_clients: bool = option(False, "offer Home Assistant's tools to Realtime clients too, as tools the "
                                     "server runs", boolean)
    limits: LimitsConfig = section(LimitsConfig, "what one session may ask of the server at once")
    tls: TlsOptions = section(TlsOptions, "TLS on the server itself (or put a reverse proxy in front)")


# ----------------------------------------------------------------------------- session defaults


@dataclass(frozen=True)
class ServerVadConfig:
    type: Literal["server_vad"] = tag("server_vad")
    threshold: float = option(0.5, "a frame whose speech probability is above this is speech", number(0, 1),
                              unit="probability")
    prefix_padding_ms: int = option(300, "audio kept before speech starts", integer(0), unit="ms")
    silence_duration_ms: int = option(500, "silence that ends a turn", integer(0), unit="ms")
    create_response: bool = option(True, "start a response when the user stops speaking", boolean)
    interrupt_response: bool = option(True, "cancel the assistant's reply when the user starts speaking", boolean)
    idle_timeout_ms: int | None = option(None, "user silence (1000-600000) after a reply before the server "
                                         "commits and responds; null = never", Maybe(integer(1000, 600_000)),
                                         unit="ms")


@dataclass(frozen=True)
class SemanticVadConfig:
    type: Literal["semantic_vad"] = tag("semantic_vad")
    eagerness: Literal["low", "medium", "high", "auto"] = option(
        "auto", "how soon to end a turn: low, medium, high or auto (= medium)", one_of("low", "medium", "high", "auto"))
    create_response: bool = option(True, "start a response when the user stops speaking", boolean)
    interrupt_response: bool = option(True, "cancel the assistant's reply when the user starts speaking", boolean)


#: `session.turn_detection.type` -> its option class.
TURN_DETECTION: Mapping[str, type] = {"server_vad": ServerVadConfig, "semantic_vad": SemanticVadConfig}


@dataclass(frozen=True)
class TranscriptionConfig:
    model: str = option("whisper-1", "model name reported to clients (the local STT does the work)", non_empty)
    language: str | None = option(None, "null = engine.stt.language", Maybe(non_empty), unit="ISO-639-1 code")
    prompt: str | None = option(None, "text that biases the transcription", Maybe(string))


def _one_modality(values: tuple[str, ...]) -> tuple[str, ...]:
    if len(values) != 1:
        raise vol.Invalid("expected [audio] or [text]")
    return values


@dataclass(frozen=True)
class SessionDefaults:
    instructions: str = option(DEFAULT_INSTRUCTIONS, "system prompt of a new session", string)
    voice: str = option("alloy", "output voice: an OpenAI voice name or a key of engine.tts.voices", non_empty)
    speed: float = option(1.0, "speech rate", number(MIN_SPEED, MAX_SPEED), unit="× normal rate")
    output_modalities: tuple[str, ...] = option(["audio"], "[audio] (speech plus transcript) or [text]",
                                                vol.All(list_of(one_of("audio", "text")), _one_modality))
    turn_detection: ServerVadConfig | SemanticVadConfig | None = option(
        {"type": "server_vad"}, "voice activity turn detection; null = manual commit",
        Maybe(tagged(TURN_DETECTION, "server_vad", "server_vad (silence-based) or semantic_vad")))
    input_transcription: TranscriptionConfig | None = option(
        None, "transcribe the user's audio for the client; null = off", Maybe(schema_of(TranscriptionConfig)))

    def as_session(self) -> dict[str, Any]:
        """These defaults in the GA session shape, to seed a new `RealtimeSession`."""
        td = None if self.turn_detection is None else asdict(self.turn_detection)
        tr = self.input_transcription
        transcription = None if tr is None else {k: v for k, v in asdict(tr).items() if v is not None}
        return {
            "type": "realtime",
            "instructions": self.instructions,
            "output_modalities": list(self.output_modalities),
            "audio": {
                "input": {"turn_detection": td, "transcription": transcription},
                "output": {"voice": self.voice, "speed": self.speed},
            },
        }


# ----------------------------------------------------------------------------- the whole file

#: `engine.type` -> its option class. `server/engines/factory.py` holds the builders.
ENGINES: Mapping[str, type] = {"cascade": CascadeConfig, "relay": RelayConfig}

#: What `engine` holds: one of the classes in `ENGINES`.
EngineConfig = CascadeConfig | RelayConfig


@dataclass(frozen=True)
class ServerConfig:
    server: ServerOptions = section(ServerOptions, "HTTP listener and access")
    log_level: str = option("info", "debug, info, warning, error or critical", one_of(*LOG_LEVELS, ignore_case=True))
    session: SessionDefaults = section(SessionDefaults, "defaults of every new Realtime session")
    engine: EngineConfig = option({}, "the speech engine",
                                  tagged(ENGINES, "cascade", "speech engine: cascade (local models) or relay "
                                         "(an upstream Realtime server)"))
    mqtt: MqttConfig = section(MqttConfig, "satellites over MQTT: broker, bridge, per-satellite settings")
    discovery: DiscoveryConfig = section(DiscoveryConfig, "zeroconf advertisement of this server")
    #: The file this came from (None: defaults and overrides only); not an option.
    source: Path | None = None


_SCHEMA = vol.Schema(schema_of(ServerConfig))


class _InFolder:
    """Validates with relative paths resolved against one folder."""

    def __init__(self, base_dir: Path) -> None:
        self.base_dir = base_dir

    def __call__(self, value: Any) -> Any:
        with base_dir_for(self.base_dir):
            return _SCHEMA(value)


def config_schema(base_dir: Path | None = None) -> vol.Schema:
    """The whole schema; relative paths resolve against `base_dir` (default: the cwd)."""
    return vol.Schema(_InFolder(base_dir if base_dir is not None else Path.cwd()))


# ----------------------------------------------------------------------------- loading


def load_config(path: Path | None, *, overrides: Mapping[str, Any] | None = None) -> ServerConfig:
    """Read, validate and build the server config; raises ConfigError naming every bad key.

    `overrides` maps dotted keys (`server.port`) to values that win over the file; None
    values are skipped so the CLI can pass its flags straight through.
    """
    raw = _read_yaml(path) if path is not None else {}
    server = raw.get("server")
    env_key = os.environ.get(API_KEY_ENV, "").strip()
    if env_key and (server is None or (isinstance(server, dict) and server.get("api_key") is None)):
        raw["server"] = {**(server or {}), "api_key": env_key}
    for dotted, value in (overrides or {}).items():
        if value is not None:
            _set_dotted(raw, dotted, value)

    base_dir = path.parent if path is not None else None
    try:
        config: ServerConfig = config_schema(base_dir)(raw)
    except vol.MultipleInvalid as exc:
        errors = sorted((_key_path(e.path), _message(e)) for e in exc.errors)
        raise ConfigError(errors, path) from None
    _check(config, path)
    return replace(config, source=path)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([("", f"cannot read the configuration: {exc.strerror or exc}")], path) from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        where = f"line {exc.problem_mark.line + 1}, column {exc.problem_mark.column + 1}" if exc.problem_mark else ""
        raise ConfigError([(where, f"invalid YAML: {exc.problem or exc.context}")], path) from None
    except yaml.YAMLError as exc:
        raise ConfigError([("", f"invalid YAML: {exc}")], path) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError([("", "expected a mapping of options at the top level")], path)
    return data


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects a key given twice (YAML would silently keep the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _set_dotted(raw: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = raw
    for part in parents:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            return  # the file's own error for this section is reported instead
        node = child
    node[leaf] = value


def _key_path(path: list[Any]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _message(error: vol.Invalid) -> str:
    if error.error_message == "extra keys not allowed":
        return "unknown option"
    if error.error_message == "required key not provided":
        return "required"
    return error.error_message


def _check(config: ServerConfig, path: Path | None) -> None:
    """Rules across sections, which the per-key schema cannot see."""
    errors: list[tuple[str, str]] = []
    voice = config.session.voice
    tts = getattr(config.engine, "tts", None)
    own_voices = tts.voices if tts is not None else {}  # the relay's voices are the upstream's
    if voice not in VOICES and voice not in own_voices:
        errors.append(("session.voice", f"unknown voice {voice!r}: use one of {', '.join(VOICES)} "
                       "or a name defined in engine.tts.voices"))
    for sat_id, sat in config.mqtt.satellites.items():
        if sat.voice is not None and sat.voice not in VOICES and sat.voice not in own_voices:
            errors.append((f"mqtt.satellites.{sat_id}.voice", f"unknown voice {sat.voice!r}: use one of "
                           f"{', '.join(VOICES)} or a name defined in engine.tts.voices"))
    errors.extend(mqtt_account_errors(config.mqtt))
    srv = config.server
    if (srv.tls.cert is None) != (srv.tls.key is None):
        errors.append(("server.tls.key" if srv.tls.key is None else "server.tls.cert",
                       "set both server.tls.cert and server.tls.key, or neither"))
    if not is_loopback(srv.host) and srv.api_key is None and not srv.allow_unauthenticated:
        errors.append(("server.api_key", f"the server listens on {srv.host}, which other machines can reach, "
                       f"but no API key is set: set the {API_KEY_ENV} environment variable or server.api_key, "
                       "or set server.allow_unauthenticated: true to let anyone on the network in"))
    if errors:
        raise ConfigError(errors, path)


# ----------------------------------------------------------------------------- documentation


def documented_options() -> tuple[OptionDoc, ...]:
    """Every option the schema accepts, in schema order, for checking the docs."""
    seen: dict[str, OptionDoc] = {}
    for doc in walk(_SCHEMA):
        seen.setdefault(doc.path, doc)
    return tuple(seen.values())
