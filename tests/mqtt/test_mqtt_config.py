"""The `mqtt` and `discovery` options: validation, the --mqtt-url flag, per-satellite session defaults."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from hearth import cli
from hearth.server.config import API_KEY_ENV, ConfigError, SatelliteSettings, ServerConfig, load_config
from hearth.server.discovery import advertised_broker, loopback_only
from hearth.server.mqtt.bridge import satellite_session_defaults
from hearth.server.mqtt.service import broker_url
from hearth.wire import MqttUrl


@pytest.fixture(autouse=True)
def _no_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(API_KEY_ENV, raising=False)


def load(tmp_path: Path, text: str, **overrides: object) -> ServerConfig:
    path = tmp_path / "server.yaml"
    path.write_text(text)
    return load_config(path, overrides=overrides or None)


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    return str(info.value)


def test_defaults_run_an_embedded_loopback_broker() -> None:
    config = load_config(None)
    mqtt = config.mqtt
    assert mqtt.enabled and mqtt.embedded and mqtt.url is None
    assert (mqtt.broker.host, mqtt.broker.port, mqtt.broker.username) == ("127.0.0.1", 1883, None)
    assert (mqtt.server_id, mqtt.protocol, mqtt.arbitration_window_ms) == ("hearth", "auto", 200)
    assert broker_url(mqtt) == MqttUrl("127.0.0.1", 1883)
    assert config.discovery.enabled and loopback_only(config)
    assert advertised_broker(config) == MqttUrl("", 1883)


def test_embedded_broker_accounts(tmp_path: Path) -> None:
    from hearth.server.mqtt.service import embedded_broker

    assert "set both" in error_of(tmp_path, "mqtt: {broker: {username: homeassistant}}")
    assert "the server's own account" in error_of(tmp_path, "mqtt: {broker: {username: hearth-server, password: x}}")
    assert "service account name" in error_of(tmp_path, "mqtt: {satellites: {homeassistant: {password: x}}}")
    # On the network no extra rule: no client is ever anonymous.
    config = load(tmp_path, """
mqtt:
  broker: {host: 0.0.0.0, username: homeassistant, password: ha-pw}
  satellites:
    kitchen: {password: k-pw, voice: echo}
    hall: {voice: alloy}
""")
    assert broker_url(config.mqtt) == MqttUrl("127.0.0.1", 1883)  # what satellites use; no credentials
    assert "pw" not in repr(config.mqtt)
    assert not loopback_only(config)  # the broker is reachable: advertise on the network
    broker = embedded_broker(config.mqtt)
    accounts = broker.accounts()
    assert accounts.pop("hearth-server") == broker.server_account[1]
    assert accounts == {"kitchen": "k-pw", "homeassistant": "ha-pw"}  # hall has no password: no account


def test_an_external_broker_needs_no_account_rule(tmp_path: Path) -> None:
    config = load(tmp_path, "mqtt: {url: 'mqtt://hearth:s%40cret@broker.lan:1884', broker: {host: 0.0.0.0}}")
    assert not config.mqtt.embedded
    assert broker_url(config.mqtt) == MqttUrl("broker.lan", 1884, "hearth", "s@cret")
    assert advertised_broker(config) == MqttUrl("broker.lan", 1884)  # never the credentials
    assert "s%40cret" not in repr(config)
    config = load(tmp_path, "mqtt: {url: 'mqtts://broker.lan', username: me, password: pw}")
    assert broker_url(config.mqtt) == MqttUrl("broker.lan", 8883, "me", "pw", tls=True)
    local = load(tmp_path, "mqtt: {url: 'mqtt://127.0.0.1:1883'}")
    assert advertised_broker(local) == MqttUrl("", 1883)  # "the host that advertised this"


@pytest.mark.parametrize(("text", "expected"), [
    ("mqtt: {url: 'http://broker'}", "mqtt.url: MQTT URL scheme must be mqtt:// or mqtts://"),
    ("mqtt: {url: 'mqtt://:1883'}", "mqtt.url: the broker URL needs a host"),
    ("mqtt: {url: 'mqtt://host:99999'}", "mqtt.url: bad MQTT URL"),
    ("mqtt: {server_id: 'my server'}", "mqtt.server_id: id must be 1-64 characters"),
    ("mqtt: {protocol: 4}", "mqtt.protocol: expected a string"),
    ("mqtt: {arbitration_window_ms: -1}", "mqtt.arbitration_window_ms: value must be at least 0"),
    ("mqtt: {satellites: {'bad/id': {voice: alloy}}}", "mqtt.satellites"),
    ("mqtt: {satellites: {kitchen: {volume: 3}}}", "mqtt.satellites.kitchen.volume: unknown option"),
    ("mqtt: {satellites: {kitchen: {voice: nobody}}}", "mqtt.satellites.kitchen.voice: unknown voice 'nobody'"),
    ("mqtt: {tls: {ca_file: missing.pem}}", "mqtt.tls.ca_file: file not found"),
    ("discovery: {enabled: 1}", "discovery.enabled: expected true or false"),
])
def test_bad_options_are_named(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in error_of(tmp_path, text)


def test_per_satellite_settings(tmp_path: Path) -> None:
    config = load(tmp_path, """
session: {voice: alloy, output_modalities: [text], turn_detection: null, instructions: House.}
mqtt:
  satellites:
    kitchen: {voice: echo, language: de}
    bedroom: {instructions: Whisper.}
""")
    sats = config.mqtt.satellites
    assert sats["kitchen"] == SatelliteSettings(voice="echo", language="de")
    base = config.session.as_session()
    kitchen = satellite_session_defaults(base, sats["kitchen"])
    assert kitchen["audio"]["output"]["voice"] == "echo"
    assert kitchen["audio"]["input"]["transcription"] == {"model": "whisper-1", "language": "de"}
    assert kitchen["instructions"] == "House."
    # A satellite always speaks and always has server VAD that answers.
    assert kitchen["output_modalities"] == ["audio"]
    assert kitchen["audio"]["input"]["turn_detection"] == {"type": "server_vad", "create_response": True,
                                                           "idle_timeout_ms": None}
    bedroom = satellite_session_defaults(base, sats["bedroom"])
    assert bedroom["instructions"] == "Whisper." and bedroom["audio"]["output"]["voice"] == "alloy"
    assert satellite_session_defaults(base, None)["audio"]["output"]["voice"] == "alloy"
    assert base["output_modalities"] == ["text"]  # the shared defaults are not modified


def test_satellites_keep_the_configured_vad_but_never_an_idle_timeout(tmp_path: Path) -> None:
    config = load(tmp_path, "session: {turn_detection: {silence_duration_ms: 700, idle_timeout_ms: 5000, "
                            "create_response: false}}")
    turn = satellite_session_defaults(config.session.as_session(), None)["audio"]["input"]["turn_detection"]
    assert (turn["silence_duration_ms"], turn["idle_timeout_ms"], turn["create_response"]) == (700, None, True)
    semantic = load(tmp_path, "session: {turn_detection: {type: semantic_vad, eagerness: high}}")
    turn = satellite_session_defaults(semantic.session.as_session(), None)["audio"]["input"]["turn_detection"]
    assert turn["type"] == "semantic_vad" and "idle_timeout_ms" not in turn


def test_cli_mqtt_url_flag(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls: list[ServerConfig] = []
    module = types.ModuleType("hearth.server.main")
    module.run = calls.append  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "hearth.server.main", module)
    path = tmp_path / "server.yaml"
    path.write_text("mqtt: {url: 'mqtt://file-broker:1883'}\n")
    assert cli.main(["server", "--config", str(path), "--mqtt-url", "mqtts://u:p@cli-broker:8884"]) == 0
    assert broker_url(calls[0].mqtt) == MqttUrl("cli-broker", 8884, "u", "p", tls=True)
    assert cli.main(["server", "--mqtt-url", "ftp://nope"]) == cli.EXIT_CONFIG
