"""The house server's configuration: every option, its unit and its default, in one place.

One voluptuous schema validates the YAML file and builds the frozen dataclasses the rest of
the server receives, so no other module re-checks a value or re-states a default. The
schema carries each option's description, which `documented_options()` walks so a test can
hold `docs/configuration.md` to it.

Precedence, highest first: `overrides` (the CLI's flags), the file, the environment
(`HEARTH_API_KEY`, only where the file sets no `server.api_key`), the defaults below.
Relative paths in a file are relative to that file's folder, so a config keeps working
whatever directory the service starts in.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import voluptuous as vol
import yaml

API_KEY_ENV = "HEARTH_API_KEY"

#: The Realtime API's built-in voice names; any other `session.voice` must be in `engine.tts.voices`.
OPENAI_VOICES = ("alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar")

#: Model names faster-whisper resolves (`faster_whisper.available_models()`; a test keeps them in step).
WHISPER_MODEL_NAMES = (
    "tiny.en", "tiny", "base.en", "base", "small.en", "small", "medium.en", "medium",
    "large-v1", "large-v2", "large-v3", "large", "distil-large-v2", "distil-medium.en",
    "distil-small.en", "distil-large-v3", "distil-large-v3.5", "large-v3-turbo", "turbo",
)  # fmt: skip

#: CTranslate2 compute types (`ctranslate2.get_supported_compute_types` lists what a device runs).
COMPUTE_TYPES = (
    "default", "auto", "int8", "int8_float32", "int8_float16", "int8_bfloat16",
    "int16", "float16", "bfloat16", "float32",
)  # fmt: skip

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")

DEFAULT_INSTRUCTIONS = "You are Hearth, a helpful voice assistant for the home. Keep answers short."


class ConfigError(Exception):
    """A configuration that cannot be used; the message names the file and each bad key."""

    def __init__(self, errors: list[tuple[str, str]], source: Path | None = None) -> None:
        self.errors = tuple(errors)
        self.source = source
        prefix = f"{source}: " if source is not None else ""
        super().__init__("\n".join(f"{prefix}{key}: {msg}" if key else f"{prefix}{msg}" for key, msg in errors))


# ----------------------------------------------------------------------------- the typed result


@dataclass(frozen=True)
class ServerOptions:
    host: str
    port: int
    api_key: str | None = field(repr=False)
    allow_unauthenticated: bool
    max_session_duration_s: int
    cors_origins: tuple[str, ...]


@dataclass(frozen=True)
class ServerVadConfig:
    type: Literal["server_vad"]
    threshold: float
    prefix_padding_ms: int
    silence_duration_ms: int
    create_response: bool
    interrupt_response: bool
    idle_timeout_ms: int | None


@dataclass(frozen=True)
class SemanticVadConfig:
    type: Literal["semantic_vad"]
    eagerness: Literal["low", "medium", "high", "auto"]
    create_response: bool
    interrupt_response: bool


@dataclass(frozen=True)
class TranscriptionConfig:
    model: str
    language: str | None
    prompt: str | None


@dataclass(frozen=True)
class SessionDefaults:
    instructions: str
    voice: str
    speed: float
    output_modalities: tuple[str, ...]
    turn_detection: ServerVadConfig | SemanticVadConfig | None
    input_transcription: TranscriptionConfig | None

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


@dataclass(frozen=True)
class VadConfig:
    model_path: Path | None


@dataclass(frozen=True)
class SttConfig:
    #: None = the bundled Whisper; else a faster-whisper model name or an absolute directory.
    model: str | None
    compute_type: str
    cpu_threads: int
    beam_size: int
    language: str | None
    download: bool


@dataclass(frozen=True)
class TtsConfig:
    default_voice: Path | None
    voices: Mapping[str, Path]
    threads: int | None


@dataclass(frozen=True)
class EntityName:
    name: str
    domain: str | None = None
    areas: tuple[str, ...] = ()


@dataclass(frozen=True)
class BrainConfig:
    type: Literal["intents"]
    language: str
    names: tuple[EntityName, ...]
    areas: tuple[str, ...]
    floors: tuple[str, ...]


@dataclass(frozen=True)
class EngineConfig:
    type: Literal["cascade"]
    workers: int
    vad: VadConfig
    stt: SttConfig
    tts: TtsConfig
    brain: BrainConfig


@dataclass(frozen=True)
class MqttTlsConfig:
    ca_file: Path | None
    cert_file: Path | None
    key_file: Path | None
    insecure: bool


@dataclass(frozen=True)
class EmbeddedBrokerConfig:
    host: str
    port: int
    username: str | None
    password: str | None = field(repr=False)


@dataclass(frozen=True)
class SatelliteSettings:
    """Per-satellite session settings; None means the `session` default."""

    voice: str | None = None
    instructions: str | None = None
    language: str | None = None


@dataclass(frozen=True)
class MqttConfig:
    enabled: bool
    #: `mqtt://user:pass@host:port` of an external broker; None = the embedded broker.
    url: str | None = field(repr=False)
    server_id: str
    username: str | None
    password: str | None = field(repr=False)
    client_id: str | None
    protocol: Literal["auto", "5", "3.1.1"]
    keepalive_s: int
    reconnect_min_s: float
    reconnect_max_s: float
    tls: MqttTlsConfig
    broker: EmbeddedBrokerConfig
    arbitration_window_ms: int
    stream_timeout_s: float
    ack_timeout_s: float
    satellites: Mapping[str, SatelliteSettings]

    @property
    def embedded(self) -> bool:
        """True when the server runs its own broker (no `url` configured)."""
        return self.enabled and self.url is None


@dataclass(frozen=True)
class DiscoveryConfig:
    enabled: bool
    name: str | None
    address: str | None


@dataclass(frozen=True)
class ServerConfig:
    server: ServerOptions
    log_level: str
    session: SessionDefaults
    engine: EngineConfig
    mqtt: MqttConfig
    discovery: DiscoveryConfig
    #: The file this came from (None: defaults and overrides only).
    source: Path | None = None


# ----------------------------------------------------------------------------- validators


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):  # YAML `true` is not a count
        raise vol.Invalid("expected int")
    return value


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise vol.Invalid("expected a number")
    return float(value)


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise vol.Invalid("expected true or false")
    return value


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise vol.Invalid("expected a string")
    return value


def _name(value: Any) -> str:
    if not _str(value).strip():
        raise vol.Invalid("must not be empty")
    return value


def _int_range(low: int, high: int | None = None) -> vol.All:
    return vol.All(_int, vol.Range(min=low, max=high))


def _num_range(low: float, high: float | None = None) -> vol.All:
    return vol.All(_number, vol.Range(min=low, max=high))


def _one_of(*choices: str, ignore_case: bool = False) -> Callable[[Any], str]:
    def validate(value: Any) -> str:
        text = _str(value).lower() if ignore_case else _str(value)
        if text not in choices:
            raise vol.Invalid(f"expected one of {', '.join(choices)} (got {value!r})")
        return text

    return validate


def _list_of(item: Any) -> vol.All:
    # A bare class inside a schema is an isinstance check, hence the lambdas here.
    return vol.All([item], lambda items: tuple(items))


class _Maybe:
    """`null` or `inner`; unlike `vol.Any(None, …)` the error is the inner one, not "not None"."""

    def __init__(self, inner: Any) -> None:
        self.inner = vol.Schema(inner)

    def __call__(self, value: Any) -> Any:
        return None if value is None else self.inner(value)


class _ByType:
    """A mapping whose `type` key picks its schema (turn detection's two kinds)."""

    def __init__(self, default: str, choices: Mapping[str, Any]) -> None:
        self.default = default
        self.choices = {name: vol.Schema(schema) for name, schema in choices.items()}

    def __call__(self, value: Any) -> Any:
        if not isinstance(value, dict):
            raise vol.Invalid("expected a mapping")
        kind = value.get("type", self.default)
        if kind not in self.choices:
            raise vol.Invalid(f"expected one of {', '.join(self.choices)} (got {kind!r})", path=["type"])
        return self.choices[kind](value)


def _origin(value: Any) -> str:
    if _str(value) != "*" and not re.fullmatch(r"https?://[^/\s]+", value):
        raise vol.Invalid(f"expected an origin like https://example.org (scheme and host, no path), got {value!r}")
    return value


def _resolve(base_dir: Path, value: str) -> Path:
    return (base_dir / Path(value).expanduser()).resolve()


def _existing_file(base_dir: Path) -> Callable[[Any], Path]:
    def validate(value: Any) -> Path:
        path = _resolve(base_dir, _name(value))
        if not path.is_file():
            raise vol.Invalid(f"file not found: {path}")
        return path

    return validate


def _piper_voice(base_dir: Path) -> Callable[[Any], Path]:
    def validate(value: Any) -> Path:
        path = _existing_file(base_dir)(value)
        if path.suffix != ".onnx":
            raise vol.Invalid(f"expected a piper voice model ending in .onnx, got {path}")
        if not Path(f"{path}.json").is_file():
            raise vol.Invalid(f"piper voice config not found: {path}.json (piper reads it next to the model)")
        return path

    return validate


def _whisper_model(base_dir: Path) -> Callable[[Any], str | None]:
    def validate(value: Any) -> str | None:
        if value is None or _name(value) in WHISPER_MODEL_NAMES:
            return value
        path = _resolve(base_dir, value)
        if path.is_dir():
            return str(path)
        raise vol.Invalid(
            f"{value!r} is neither a model name ({', '.join(WHISPER_MODEL_NAMES)}) "
            f"nor a CTranslate2 model directory (no such directory: {path})"
        )

    return validate


def _mqtt_url(value: Any) -> str:
    from hearth.wire import MqttUrl, ProtocolError

    try:
        url = MqttUrl.parse(_name(value))
    except ProtocolError as err:
        raise vol.Invalid(str(err).split(" (")[0]) from None
    if not url.host:
        raise vol.Invalid("the broker URL needs a host, e.g. mqtt://192.168.1.10:1883")
    return value


def _node_id(value: Any) -> str:
    from hearth.wire import ProtocolError, check_node_id

    try:
        return check_node_id(_str(value))
    except ProtocolError as err:
        raise vol.Invalid(str(err).split(" (")[0]) from None


def _entity_name(value: Any) -> EntityName:
    if isinstance(value, str):
        return EntityName(_name(value))
    return _ENTITY_NAME(value)


def _build(cls: type) -> Callable[[dict[str, Any]], Any]:
    return lambda values: cls(**values)


def _opt(key: str, default: Any, doc: str) -> vol.Optional:
    """An option with its default and its documentation (unit first where it has one)."""
    return vol.Optional(key, default=default, description=doc)


# ----------------------------------------------------------------------------- the schema

_ENTITY_NAME = vol.All(
    {
        vol.Required("name", description="the entity's name as people say it"): _name,
        _opt("domain", None, "Home Assistant domain, e.g. light"): _Maybe(_name),
        _opt("areas", [], "areas the entity is in"): _list_of(_name),
    },
    _build(EntityName),
)

_COMMON_VAD = {
    _opt("create_response", True, "start a response when the user stops speaking"): _bool,
    _opt("interrupt_response", True, "cancel the assistant's reply when the user starts speaking"): _bool,
}

_TURN_DETECTION = _ByType(
    "server_vad",
    {
        "server_vad": vol.All(
            {
                _opt("type", "server_vad", "server_vad (silence-based) or semantic_vad"): "server_vad",
                _opt("threshold", 0.5, "speech probability 0-1 above which a frame is speech"): _num_range(0, 1),
                _opt("prefix_padding_ms", 300, "ms of audio kept before speech starts"): _int_range(0),
                _opt("silence_duration_ms", 500, "ms of silence that ends a turn"): _int_range(0),
                **_COMMON_VAD,
                _opt("idle_timeout_ms", None, "ms (1000-600000) of user silence after a reply before "
                     "the server commits and responds; null = never"): _Maybe(_int_range(1000, 600_000)),
            },
            _build(ServerVadConfig),
        ),
        "semantic_vad": vol.All(
            {
                vol.Required("type"): "semantic_vad",
                _opt("eagerness", "auto", "how soon to end a turn: low, medium, high or auto (= medium)"):
                    _one_of("low", "medium", "high", "auto"),
                **_COMMON_VAD,
            },
            _build(SemanticVadConfig),
        ),
    },
)

_TRANSCRIPTION = vol.All(
    {
        _opt("model", "whisper-1", "model name reported to clients (the local STT does the work)"): _name,
        _opt("language", None, "ISO-639-1 code; null = engine.stt.language"): _Maybe(_name),
        _opt("prompt", None, "text that biases the transcription"): _Maybe(_str),
    },
    _build(TranscriptionConfig),
)

_SERVER = vol.All(
    {
        _opt("host", "127.0.0.1", "bind address"): _name,
        _opt("port", 8000, "TCP port"): _int_range(1, 65535),
        _opt("api_key", None, f"bearer token clients must send; env {API_KEY_ENV}"): _Maybe(_name),
        _opt("allow_unauthenticated", False, "permit no api_key on a non-loopback bind"): _bool,
        _opt("max_session_duration_s", 3600, "seconds; a session ends with session_expired after this"):
            _int_range(1),
        _opt("cors_origins", [], "origins allowed to call the HTTP API from a browser"): _list_of(_origin),
    },
    _build(ServerOptions),
)

_SESSION = vol.All(
    {
        _opt("instructions", DEFAULT_INSTRUCTIONS, "system prompt of a new session"): _str,
        _opt("voice", "alloy", "output voice: an OpenAI voice name or a key of engine.tts.voices"): _name,
        _opt("speed", 1.0, "speech rate multiplier, 0.25-1.5"): _num_range(0.25, 1.5),
        _opt("output_modalities", ["audio"], "[audio] (speech plus transcript) or [text]"):
            vol.All(_list_of(_one_of("audio", "text")), vol.Length(min=1, max=1, msg="expected [audio] or [text]")),
        _opt("turn_detection", {"type": "server_vad"}, "voice activity turn detection; null = manual commit"):
            _Maybe(_TURN_DETECTION),
        _opt("input_transcription", None, "transcribe the user's audio for the client; null = off"):
            _Maybe(_TRANSCRIPTION),
    },
    _build(SessionDefaults),
)


def _mqtt_schema(base_dir: Path) -> vol.All:
    tls = {
        _opt("ca_file", None, "CA certificate (PEM) that signed the broker's; null = the system store"):
            _Maybe(_existing_file(base_dir)),
        _opt("cert_file", None, "client certificate (PEM), for brokers that ask for one"):
            _Maybe(_existing_file(base_dir)),
        _opt("key_file", None, "private key (PEM) of cert_file"): _Maybe(_existing_file(base_dir)),
        _opt("insecure", False, "skip the broker host name check (testing only)"): _bool,
    }
    broker = {
        _opt("host", "127.0.0.1", "embedded broker bind address; non-loopback needs username and password"): _name,
        _opt("port", 1883, "embedded broker TCP port"): _int_range(1, 65535),
        _opt("username", None, "the one account of the embedded broker; null = anonymous (loopback only)"):
            _Maybe(_name),
        _opt("password", None, "password of that account"): _Maybe(_name),
    }
    satellite = vol.All(
        {
            _opt("voice", None, "output voice; null = session.voice"): _Maybe(_name),
            _opt("instructions", None, "system prompt; null = session.instructions"): _Maybe(_str),
            _opt("language", None, "ISO-639-1 code of the speech; null = engine.stt.language"): _Maybe(_name),
        },
        _build(SatelliteSettings),
    )
    return vol.All(
        {
            _opt("enabled", True, "serve satellites over MQTT; false = no broker, no bridge"): _bool,
            _opt("url", None, "external broker mqtt://[user[:password]@]host[:port] or mqtts://; "
                 "null = start the embedded broker"): _Maybe(_mqtt_url),
            _opt("server_id", "hearth", "this server's id in hearth/v1/server/<id>/status"): _node_id,
            _opt("username", None, "broker username (wins over the one in url)"): _Maybe(_name),
            _opt("password", None, "broker password (wins over the one in url)"): _Maybe(_name),
            _opt("client_id", None, "MQTT client id; null = hearth-server-<server_id>"): _Maybe(_name),
            _opt("protocol", "auto", "auto (MQTT 5, else 3.1.1), 5 or 3.1.1"): _one_of("auto", "5", "3.1.1"),
            _opt("keepalive_s", 30, "seconds; the broker publishes the last will after 1.5 x this of silence"):
                _int_range(5, 3600),
            _opt("reconnect_min_s", 0.5, "seconds before the first reconnect; doubles per failure"):
                _num_range(0.1),
            _opt("reconnect_max_s", 30.0, "seconds; longest wait between reconnects"): _num_range(0.1),
            _opt("tls", {}, "TLS for mqtts:// URLs"): vol.All(tls, _build(MqttTlsConfig)),
            _opt("broker", {}, "the embedded broker (amqtt), used when url is null"):
                vol.All(broker, _build(EmbeddedBrokerConfig)),
            _opt("arbitration_window_ms", 200, "ms to collect wake words from several satellites before "
                 "picking one"): _int_range(0, 5000),
            _opt("stream_timeout_s", 5.0, "seconds without mic audio after which a listening session is closed"):
                _num_range(0.5),
            _opt("ack_timeout_s", 10.0, "seconds to wait for playback-finished after the reply has played"):
                _num_range(0.5),
            _opt("satellites", {}, "satellite id -> {voice, instructions, language}"):
                vol.All({_node_id: satellite}, lambda sats: MappingProxyType(sats)),
        },
        _build(MqttConfig),
    )


_DISCOVERY = vol.All(
    {
        _opt("enabled", True, "advertise _hearth._tcp.local. with zeroconf"): _bool,
        _opt("name", None, "service instance name; null = Hearth <mqtt.server_id>"): _Maybe(_name),
        _opt("address", None, "IPv4 address to advertise; null = this host's addresses"): _Maybe(_name),
    },
    _build(DiscoveryConfig),
)


def _engine_schema(base_dir: Path) -> vol.All:
    vad = {
        _opt("model_path", None, "Silero VAD .onnx file; null = the one faster-whisper ships"):
            _Maybe(_existing_file(base_dir)),
    }
    stt = {
        _opt("model", None, "null = bundled Whisper tiny.en; a model name or a CTranslate2 directory"):
            _whisper_model(base_dir),
        _opt("compute_type", "int8", "CTranslate2 compute type"): _one_of(*COMPUTE_TYPES),
        _opt("cpu_threads", 2, "threads per transcription; 0 = CTranslate2's default"): _int_range(0),
        _opt("beam_size", 1, "beam search width; 1 = greedy, fastest"): _int_range(1),
        _opt("language", "en", "ISO-639-1 code; null = detect"): _Maybe(_name),
        _opt("download", False, "allow downloading a named model that is not cached"): _bool,
    }
    tts = {
        _opt("default_voice", None, "piper .onnx used for unmapped voices; null = bundled en_US-joe-medium"):
            _Maybe(_piper_voice(base_dir)),
        _opt("voices", {}, "voice name -> piper .onnx path"):
            vol.All({_name: _piper_voice(base_dir)}, lambda voices: MappingProxyType(voices)),
        _opt("threads", None, "ONNX Runtime threads per synthesis; null = its default"): _Maybe(_int_range(1)),
    }
    brain = {
        _opt("type", "intents", "intents (Home Assistant's local matcher)"): _one_of("intents"),
        _opt("language", "en", "intent language"): _name,
        _opt("names", [], "entity names known besides the client's: a string or {name, domain, areas}"):
            _list_of(_entity_name),
        _opt("areas", [], "area names known besides the client's"): _list_of(_name),
        _opt("floors", [], "floor names known besides the client's"): _list_of(_name),
    }
    return vol.All(
        {
            _opt("type", "cascade", "speech engine; only cascade for now"): _one_of("cascade"),
            _opt("workers", 2, "inference threads shared by all sessions"): _int_range(1),
            _opt("vad", {}, "server voice activity detection"): vol.All(vad, _build(VadConfig)),
            _opt("stt", {}, "speech-to-text (faster-whisper)"): vol.All(stt, _build(SttConfig)),
            _opt("tts", {}, "text-to-speech (piper)"): vol.All(tts, _build(TtsConfig)),
            _opt("brain", {}, "what writes the reply"): vol.All(brain, _build(BrainConfig)),
        },
        _build(EngineConfig),
    )


def config_schema(base_dir: Path | None = None) -> vol.Schema:
    """The whole schema; relative paths resolve against `base_dir` (default: the cwd)."""
    base = base_dir if base_dir is not None else Path.cwd()
    return vol.Schema(
        vol.All(
            {
                _opt("server", {}, "HTTP listener and access"): _SERVER,
                _opt("log_level", "info", "debug, info, warning, error or critical"):
                    _one_of(*LOG_LEVELS, ignore_case=True),
                _opt("session", {}, "defaults of every new Realtime session"): _SESSION,
                _opt("engine", {}, "the speech engine"): _engine_schema(base),
                _opt("mqtt", {}, "satellites over MQTT: broker, bridge, per-satellite settings"):
                    _mqtt_schema(base),
                _opt("discovery", {}, "zeroconf advertisement of this server"): _DISCOVERY,
            },
            _build(ServerConfig),
        )
    )


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
    if voice not in OPENAI_VOICES and voice not in config.engine.tts.voices:
        errors.append(("session.voice", f"unknown voice {voice!r}: use one of {', '.join(OPENAI_VOICES)} "
                       "or a name defined in engine.tts.voices"))
    for sat_id, sat in config.mqtt.satellites.items():
        if sat.voice is not None and sat.voice not in OPENAI_VOICES and sat.voice not in config.engine.tts.voices:
            errors.append((f"mqtt.satellites.{sat_id}.voice", f"unknown voice {sat.voice!r}: use one of "
                           f"{', '.join(OPENAI_VOICES)} or a name defined in engine.tts.voices"))
    broker = config.mqtt.broker
    if config.mqtt.embedded and not _is_loopback(broker.host) and (broker.username is None or broker.password is None):
        errors.append(("mqtt.broker.username", f"the embedded broker listens on {broker.host}, which other machines "
                       "can reach, but has no account: set mqtt.broker.username and mqtt.broker.password"))
    if config.mqtt.embedded and (broker.username is None) != (broker.password is None):
        errors.append(("mqtt.broker.password", "set both mqtt.broker.username and mqtt.broker.password, or neither"))
    srv = config.server
    if not _is_loopback(srv.host) and srv.api_key is None and not srv.allow_unauthenticated:
        errors.append(("server.api_key", f"the server listens on {srv.host}, which other machines can reach, "
                       f"but no API key is set: set the {API_KEY_ENV} environment variable or server.api_key, "
                       "or set server.allow_unauthenticated: true to let anyone on the network in"))
    if errors:
        raise ConfigError(errors, path)


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: assume it is reachable from elsewhere


# ----------------------------------------------------------------------------- documentation


@dataclass(frozen=True)
class OptionDoc:
    #: Dotted key, e.g. `engine.stt.beam_size`.
    path: str
    #: The default (REQUIRED where the option has none).
    default: Any
    description: str


REQUIRED = vol.UNDEFINED


def documented_options() -> tuple[OptionDoc, ...]:
    """Every option the schema accepts, in schema order, for checking the docs."""
    seen: dict[str, OptionDoc] = {}
    for doc in _walk(config_schema(), ""):
        seen.setdefault(doc.path, doc)
    return tuple(seen.values())


def _walk(node: Any, prefix: str) -> Iterator[OptionDoc]:
    if isinstance(node, vol.Schema):
        yield from _walk(node.schema, prefix)
    elif isinstance(node, (vol.All, vol.Any)):
        for inner in node.validators:
            yield from _walk(inner, prefix)
    elif isinstance(node, _Maybe):
        yield from _walk(node.inner, prefix)
    elif isinstance(node, _ByType):
        for inner in node.choices.values():
            yield from _walk(inner, prefix)
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
            )
            yield from _walk(value, path)
