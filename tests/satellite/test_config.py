"""Satellite configuration: schema, overrides, the example file, and docs that cover every option."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from hearth.satellite.config import ConfigError, SatelliteConfig, config_from_dict, iter_options, load_config

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "satellite-configuration.md"
EXAMPLE = ROOT / "firmware-config" / "satellite.example.yaml"


def test_defaults():
    config = config_from_dict({})
    assert config.wake.engine == "openwakeword" and config.wake.models == ["hey_jarvis"]
    assert config.vad.engine == "micro" and config.audio.frame_ms == 20
    assert config.mqtt.protocol == "auto" and config.led.enabled is False
    with pytest.raises(ConfigError, match="satellite.id is required"):
        config.satellite_id  # noqa: B018


def test_every_option_is_documented():
    text = DOCS.read_text()
    missing = [path for path, _ in iter_options() if f"`{path}`" not in text]
    assert not missing, f"document these options in {DOCS.name}: {missing}"


def test_every_option_has_a_description_and_validator():
    for path, f in iter_options():
        assert f.metadata["doc"], path
        assert f.metadata["validator"] is not None, path


def test_documented_options_exist():
    """The reverse: the docs do not describe options that are gone."""
    known = {path for path, _ in iter_options()}
    documented = set(re.findall(r"^\| `([a-z_]+(?:\.[a-z_]+)+|log_level)` \|", DOCS.read_text(), re.M))
    assert documented <= known, documented - known


def test_example_file_loads_and_is_complete():
    config = load_config(EXAMPLE)
    assert config.satellite_id == "kitchen"
    assert config.mqtt.url == "mqtt://192.168.1.10:1883"
    text = EXAMPLE.read_text()
    sections = {path.split(".")[0] for path, _ in iter_options()}
    assert all(re.search(rf"^{s}:", text, re.M) for s in sections)


def test_overrides_beat_the_file(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("satellite: {id: kitchen}\nmqtt: {url: 'mqtt://a:1883'}\nwake: {models: [alexa]}\n")
    config = load_config(path, {"mqtt.url": "mqtts://u:p@b:8883", "satellite.id": "porch", "wake.models": ["okay_nabu"]})
    assert config.mqtt.url == "mqtts://u:p@b:8883" and config.satellite_id == "porch"
    assert config.wake.models == ["okay_nabu"]


def test_cli_flags_map_to_options(tmp_path):
    from hearth.satellite.cli import config_from_args, configure_parser

    parser = argparse.ArgumentParser()
    configure_parser(parser)
    args = parser.parse_args(
        ["--id", "hall", "--mqtt-url", "mqtt://h:1", "--wake-engine", "micro", "--wake-model", "alexa",
         "--wake-model", "okay_nabu", "--input-device", "2", "--muted", "--log-level", "debug"]
    )
    config = config_from_args(args)
    assert config.satellite_id == "hall" and config.mqtt.url == "mqtt://h:1"
    assert config.wake.engine == "micro" and config.wake.models == ["alexa", "okay_nabu"]
    assert config.audio.input_device == 2 and config.mute.start_muted and config.log_level == "debug"


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"wake": {"engine": "snowboy"}}, "wake"),
        ({"wake": {"threshold": 1.5}}, "threshold"),
        ({"wake": {"models": []}}, "models"),
        ({"wake": {"modles": ["x"]}}, "extra keys"),
        ({"satellite": {"id": "kitchen/1"}}, "id"),
        ({"mqtt": {"url": "http://broker"}}, "url"),
        ({"audio": {"frame_ms": 25}}, "frame_ms"),
        ({"hooks": {"states": {"sleeping": "x"}}}, "states"),
        ({"hooks": {"command": 5}}, "command"),
        ({"vad": {"silence": 10}}, "silence"),
    ],
)
def test_invalid_configs(data, needle):
    with pytest.raises(ConfigError, match=needle):
        config_from_dict(data)


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("satellite: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(bad)


def test_empty_sections_are_fine(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("satellite:\n  id: kitchen\nwake:\nmqtt:\n")
    assert isinstance(load_config(path), SatelliteConfig)


def test_model_entries_with_thresholds():
    config = config_from_dict({"wake": {"models": ["hey_jarvis", {"model": "alexa", "threshold": 0.7}]}})
    assert config.wake.models[1] == {"model": "alexa", "threshold": 0.7}
