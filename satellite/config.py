"""Satellite configuration: one module, one voluptuous schema, every option documented here.

Each option is a dataclass field declared with :func:`option`, which records
its default, unit, validator and one-line description. :data:`SCHEMA` (the
voluptuous schema) is built from those fields, and docs/satellite-configuration.md
documents every one of them (a test checks it).

The YAML file mirrors the sections below, e.g.::

    satellite: {id: kitchen}
    mqtt: {url: "mqtt://kitchen:secret@192.168.1.10:1883"}
    wake: {engine: openwakeword, models: [hey_jarvis]}
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import voluptuous as vol
import voluptuous.humanize

from hearth.wire import MqttUrl, ProtocolError, check_node_id


class ConfigError(ValueError):
    """The configuration file or a command-line override is invalid."""


def option(default: Any, doc: str, validator: Any = None, *, unit: str | None = None) -> Any:
    """A config field: its default, its validator and its documentation, in one place."""
    metadata = {"doc": doc, "validator": validator, "unit": unit}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def section(cls: type, doc: str) -> Any:
    return field(default_factory=cls, metadata={"doc": doc, "section": True})


def _node_id(value: Any) -> str:
    try:
        return check_node_id(str(value))
    except ProtocolError as err:
        raise vol.Invalid(str(err)) from err


def _mqtt_url(value: Any) -> str:
    try:
        MqttUrl.parse(str(value))
    except ProtocolError as err:
        raise vol.Invalid(str(err)) from err
    return str(value)


def _device(value: Any) -> int | str:
    """An audio device: its PyAudio index, or a case-insensitive part of its name."""
    if isinstance(value, bool):
        raise vol.Invalid("device must be a name or an index")
    if isinstance(value, int):
        return value
    text = str(value)
    return int(text) if text.isdigit() else text


def _command(value: Any) -> str | list[str]:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(v, (str, int, float)) for v in value):
        return [str(v) for v in value]
    raise vol.Invalid("a command is a string (split into words, no shell) or a list of arguments")


_MODEL = vol.Any(
    str,
    vol.Schema(
        {
            vol.Required("model"): str,
            vol.Optional("threshold"): vol.All(vol.Coerce(float), vol.Range(min=0.0, max=1.0)),
        }
    ),
)

STATES = ("idle", "listening", "thinking", "speaking", "error", "muted")


@dataclass(frozen=True)
class SatelliteSection:
    id: str | None = option(None, "Satellite id: one MQTT topic level and its broker username. Required (here or `--id`).", vol.Any(None, _node_id))
    name: str | None = option(None, "Friendly name shown by the server and Home Assistant.", vol.Any(None, str))
    area: str | None = option(None, "Area/room the satellite is in (Home Assistant area name).", vol.Any(None, str))


@dataclass(frozen=True)
class TlsSection:
    ca_file: str | None = option(None, "CA certificate (PEM) that signed the broker's certificate; the system store when unset.", vol.Any(None, str))
    cert_file: str | None = option(None, "Client certificate (PEM) for brokers that require one.", vol.Any(None, str))
    key_file: str | None = option(None, "Private key (PEM) of `cert_file`.", vol.Any(None, str))
    insecure: bool = option(False, "Skip the broker hostname check (testing only).", bool)


@dataclass(frozen=True)
class MqttSection:
    url: str | None = option(None, "Broker URL `mqtt://[user[:password]@]host[:port]` (`mqtts://` for TLS). Unset: find the house server with zeroconf.", vol.Any(None, _mqtt_url))
    username: str | None = option(None, "Username (overrides the one in `url`). Unset with a password set: the satellite id, which is what the embedded broker and the shipped Mosquitto ACL expect.", vol.Any(None, str))
    password: str | None = option(None, "Password (overrides the one in `url`).", vol.Any(None, str))
    password_file: str | None = option(None, "Read the password from this file (first line), to keep it out of the config.", vol.Any(None, str))
    client_id: str | None = option(None, "MQTT client id. Default `hearth-satellite-<id>`.", vol.Any(None, str))
    protocol: str = option("auto", "`auto` (MQTT 5, falling back to 3.1.1 if the broker refuses it), `5` or `3.1.1`.", vol.In(["auto", "5", "3.1.1"]))
    keepalive: int = option(30, "Keep-alive interval; the broker publishes the last will after 1.5× this without traffic.", vol.All(int, vol.Range(min=5, max=3600)), unit="s")
    reconnect_min: float = option(1.0, "First delay before reconnecting after the broker went away; doubles on each failure.", vol.All(vol.Coerce(float), vol.Range(min=0.1)), unit="s")
    reconnect_max: float = option(30.0, "Longest delay between reconnect attempts.", vol.All(vol.Coerce(float), vol.Range(min=0.1)), unit="s")
    tls: TlsSection = section(TlsSection, "TLS settings, used when `url` is `mqtts://`.")


@dataclass(frozen=True)
class DiscoverySection:
    enabled: bool = option(True, "With no `mqtt.url`, browse `_hearth._tcp.local.` for the house server and use the broker it advertises.", bool)
    timeout: float = option(5.0, "How long one browse waits for an answer before trying again.", vol.All(vol.Coerce(float), vol.Range(min=0.5)), unit="s")


@dataclass(frozen=True)
class AudioSection:
    input_device: int | str | None = option(None, "Microphone: PyAudio device index or part of its name (`hearth satellite --list-devices`). Default device when unset.", vol.Any(None, _device))
    output_device: int | str | None = option(None, "Speaker: PyAudio device index or part of its name. Default device when unset.", vol.Any(None, _device))
    frame_ms: int = option(20, "Length of one captured/streamed audio frame (20 or 30; 16 kHz mono PCM16 on the wire).", vol.In([20, 30]), unit="ms")
    output_buffer_ms: int = option(60, "Audio handed to the sound card ahead of time while playing; smaller stops faster on barge-in.", vol.All(int, vol.Range(min=20, max=1000)), unit="ms")


@dataclass(frozen=True)
class WakeSection:
    engine: str = option("openwakeword", "`openwakeword` (openWakeWord on tflite-runtime, ~1.6 ms per 80 ms frame) or `micro` (microWakeWord, ~0.2 ms).", vol.In(["openwakeword", "micro"]))
    models: list = option(["hey_jarvis"], "Wake word models: built-in names (openwakeword: okay_nabu, hey_jarvis, alexa, hey_mycroft, hey_rhasspy; micro: the same but hey_rhasspy) or paths to custom `.tflite` files (micro: a `.json` manifest or a `.tflite` with one beside it); an entry may be `{model: NAME, threshold: 0.6}`.", vol.All([_MODEL], vol.Length(min=1)))
    threshold: float | None = option(None, "Score a frame must reach. Default 0.5 for openwakeword, the model's `probability_cutoff` for micro.", vol.Any(None, vol.All(vol.Coerce(float), vol.Range(min=0.0, max=1.0))))
    trigger_level: int = option(1, "Consecutive model outputs at or above the threshold needed to fire (80 ms each for openwakeword, 30 ms for micro).", vol.All(int, vol.Range(min=1, max=50)))
    refractory: float = option(2.0, "After firing, ignore the wake word for this long (audio time).", vol.All(vol.Coerce(float), vol.Range(min=0.0)), unit="s")


@dataclass(frozen=True)
class VadSection:
    engine: str = option("micro", "Edge VAD: `micro` (pymicro-vad, ~0.1 ms per 20 ms frame, ignores steady noise) or `webrtcvad` (webrtcvad-wheels, a few µs, but calls loud or steady noise speech once it has heard speech).", vol.In(["micro", "webrtcvad"]))
    aggressiveness: int = option(3, "webrtcvad mode 0–3; 3 rejects the most noise.", vol.All(int, vol.Range(min=0, max=3)))
    threshold: float = option(0.5, "pymicro-vad speech probability threshold.", vol.All(vol.Coerce(float), vol.Range(min=0.0, max=1.0)))
    min_speech: int = option(120, "Speech must last this long (consecutively) before the end-of-speech timer can run.", vol.All(int, vol.Range(min=0)), unit="ms")
    silence: int = option(700, "Trailing silence that ends the utterance (edge end of speech).", vol.All(int, vol.Range(min=100)), unit="ms")
    no_speech_timeout: float = option(5.0, "Give up when nobody speaks this long after the mic opened (wake word or continued conversation).", vol.All(vol.Coerce(float), vol.Range(min=0.5)), unit="s")
    max_utterance: float = option(15.0, "Cap on one utterance; streaming stops with reason `max-length`.", vol.All(vol.Coerce(float), vol.Range(min=1.0)), unit="s")


@dataclass(frozen=True)
class SessionSection:
    accept_timeout: float = option(3.0, "Error out when no server accepts (or stands down) a wake within this time.", vol.All(vol.Coerce(float), vol.Range(min=0.2)), unit="s")
    reply_timeout: float = option(20.0, "Error out when no reply starts this long after the utterance ended.", vol.All(vol.Coerce(float), vol.Range(min=1.0)), unit="s")
    reply_grace: float = option(0.3, "After `reply-end`, wait this long for reply frames still in flight before finishing playback.", vol.All(vol.Coerce(float), vol.Range(min=0.0)), unit="s")
    continue_conversation: bool = option(True, "Reopen the mic without a wake word when a reply ends with a question (after playback and its ack).", bool)
    barge_in: bool = option(True, "Listen for the wake word while a reply plays; if heard, stop playback and start a new turn.", bool)
    error_hold: float = option(2.0, "How long the `error` state is shown before going back to idle.", vol.All(vol.Coerce(float), vol.Range(min=0.0)), unit="s")


@dataclass(frozen=True)
class HooksSection:
    command: str | list[str] | None = option(None, "Run on every state change, with the new state as last argument and HEARTH_STATE, HEARTH_PREVIOUS_STATE, HEARTH_SATELLITE_ID, HEARTH_SESSION_ID in the environment. A string is split into words (no shell); for pipes use `[sh, -c, \"…\"]`.", vol.Any(None, _command))
    states: dict = option({}, "Per-state commands, e.g. `{listening: [aplay, /usr/share/sounds/ding.wav]}`; run in addition to `command`.", {vol.In(STATES): _command})
    timeout: float = option(10.0, "Kill a hook still running after this long.", vol.All(vol.Coerce(float), vol.Range(min=0.1)), unit="s")


@dataclass(frozen=True)
class LedSection:
    enabled: bool = option(False, "Drive a status LED on a GPIO pin (needs the optional `gpiozero` package).", bool)
    pin: int = option(12, "BCM GPIO pin of the LED.", vol.All(int, vol.Range(min=0, max=40)))
    active_high: bool = option(True, "False when the LED lights with the pin low.", bool)


@dataclass(frozen=True)
class SoundsSection:
    wake: str | None = option(None, "WAV played when the wake word is accepted (16 kHz mono PCM16 best; others are converted).", vol.Any(None, str))
    done: str | None = option(None, "WAV played when a session ends normally.", vol.Any(None, str))
    error: str | None = option(None, "WAV played on entering the error state.", vol.Any(None, str))


@dataclass(frozen=True)
class MuteSection:
    start_muted: bool = option(False, "Start muted (also `--muted`). Unmute over MQTT (`mute` command) or locally.", bool)
    button_pin: int | None = option(None, "BCM GPIO pin of a push button that toggles mute (needs `gpiozero`). SIGUSR1 always toggles mute.", vol.Any(None, vol.All(int, vol.Range(min=0, max=40))))


@dataclass(frozen=True)
class SatelliteConfig:
    satellite: SatelliteSection = section(SatelliteSection, "Identity.")
    mqtt: MqttSection = section(MqttSection, "Broker connection.")
    discovery: DiscoverySection = section(DiscoverySection, "Finding the house server with zeroconf.")
    audio: AudioSection = section(AudioSection, "Microphone and speaker.")
    wake: WakeSection = section(WakeSection, "Wake word detection.")
    vad: VadSection = section(VadSection, "Edge voice activity detection (end of speech).")
    session: SessionSection = section(SessionSection, "Conversation timing and behaviour.")
    hooks: HooksSection = section(HooksSection, "Commands run on state changes.")
    led: LedSection = section(LedSection, "Optional GPIO status LED.")
    sounds: SoundsSection = section(SoundsSection, "Optional feedback sounds.")
    mute: MuteSection = section(MuteSection, "Mute control.")
    log_level: str = option("info", "Log level: debug, info, warning or error.", vol.In(["debug", "info", "warning", "error"]))

    @property
    def satellite_id(self) -> str:
        if not self.satellite.id:
            raise ConfigError("satellite.id is required (in the config file or with --id)")
        return self.satellite.id


def _schema_for(cls: type) -> vol.Schema:
    keys: dict[Any, Any] = {}
    for f in dataclasses.fields(cls):
        if f.metadata.get("section"):
            keys[vol.Optional(f.name, default={})] = vol.Any(None, _schema_for(f.default_factory))  # type: ignore[arg-type]
        else:
            keys[vol.Optional(f.name)] = f.metadata["validator"]
    return vol.Schema(keys)


#: The one schema (sections may be omitted or empty).
SCHEMA = _schema_for(SatelliteConfig)


def iter_options(cls: type = SatelliteConfig, prefix: str = "") -> Iterator[tuple[str, dataclasses.Field]]:
    """Every leaf option as (dotted path, field), e.g. ("wake.threshold", …). Used by the docs test."""
    for f in dataclasses.fields(cls):
        if f.metadata.get("section"):
            yield from iter_options(f.default_factory, f"{prefix}{f.name}.")  # type: ignore[arg-type]
        else:
            yield f"{prefix}{f.name}", f


def _build(cls: type, data: dict[str, Any]) -> Any:
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        if f.metadata.get("section"):
            value = _build(f.default_factory, value or {})  # type: ignore[arg-type]
        kwargs[f.name] = value
    return cls(**kwargs)


def config_from_dict(data: dict[str, Any] | None) -> SatelliteConfig:
    """Validate a parsed YAML document and build the typed config."""
    try:
        validated = SCHEMA(data or {})
    except vol.Invalid as err:
        raise ConfigError(f"invalid satellite configuration: {vol.humanize.humanize_error(data, err)}") from err
    return _build(SatelliteConfig, validated)


def load_config(path: str | Path | None, overrides: dict[str, Any] | None = None) -> SatelliteConfig:
    """Load a YAML config file (or none) and apply dotted overrides like ``{"mqtt.url": …}``."""
    import yaml

    data: dict[str, Any] = {}
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as err:
            raise ConfigError(f"cannot read config file {path}: {err}") from err
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ConfigError(f"config file {path} is not valid YAML: {err}") from err
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must be a mapping")
        data = loaded or {}
    for dotted, value in (overrides or {}).items():
        target = data
        *parents, leaf = dotted.split(".")
        for name in parents:
            child = target.get(name)
            if not isinstance(child, dict):
                child = target[name] = {}
            target = child
        target[leaf] = value
    return config_from_dict(data)
