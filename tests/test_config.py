"""The server configuration: defaults, validation messages, precedence, security, docs."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import pytest
import voluptuous as vol

from hearth.server.config import (
    API_KEY_ENV,
    REQUIRED,
    ConfigError,
    SemanticVadConfig,
    ServerConfig,
    ServerVadConfig,
    TranscriptionConfig,
    documented_options,
    load_config,
)
from hearth.server.engines.cascade.options import (
    WHISPER_MODEL_NAMES,
    CascadeConfig,
    EntityName,
    IntentsConfig,
    PiperConfig,
    WhisperConfig,
)
from hearth.server.options import non_empty, option, tag, tagged, walk

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "configuration.md"
EXAMPLE = ROOT / "firmware-config" / "hearth-server.example.yaml"


@pytest.fixture(autouse=True)
def _no_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(API_KEY_ENV, raising=False)


def write(tmp_path: Path, text: str, name: str = "server.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def load_text(tmp_path: Path, text: str, **overrides: Any) -> Any:
    return load_config(write(tmp_path, text), overrides=overrides or None)


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_text(tmp_path, text)
    return str(info.value)


def make_voice(folder: Path, name: str = "voice.onnx", with_json: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    model = folder / name
    model.write_bytes(b"onnx")
    if with_json:
        Path(f"{model}.json").write_text("{}")
    return model


# ----------------------------------------------------------------------------- defaults


def test_defaults_without_a_file() -> None:
    config = load_config(None)
    assert config.source is None
    assert (config.server.host, config.server.port, config.server.api_key) == ("127.0.0.1", 8000, None)
    assert config.server.allow_unauthenticated is False
    assert config.server.max_session_duration_s == 3600
    assert config.server.cors_origins == ()
    assert config.log_level == "info"
    session = config.session
    assert session.instructions.startswith("You are Hearth")
    assert (session.voice, session.speed, session.output_modalities) == ("alloy", 1.0, ("audio",))
    assert session.turn_detection == ServerVadConfig(
        type="server_vad", threshold=0.5, prefix_padding_ms=300, silence_duration_ms=500,
        create_response=True, interrupt_response=True, idle_timeout_ms=None,
    )
    assert session.input_transcription is None
    engine = config.engine
    assert (engine.type, engine.workers, engine.vad.model_path) == ("cascade", 2, None)
    stt = engine.stt
    assert (stt.model, stt.compute_type, stt.cpu_threads, stt.beam_size, stt.language, stt.download) == (
        None, "int8", 2, 1, "en", False,
    )
    assert (engine.tts.default_voice, dict(engine.tts.voices), engine.tts.threads) == (None, {}, None)
    brain = engine.brain
    assert (brain.type, brain.language, brain.names, brain.areas, brain.floors) == ("intents", "en", (), (), ())


@pytest.mark.parametrize("text", ["", "# only a comment\n", "server: {}\nengine: {stt: {}}\n"])
def test_empty_file_and_empty_sections_give_defaults(tmp_path: Path, text: str) -> None:
    config = load_text(tmp_path, text)
    assert config.source == tmp_path / "server.yaml"
    assert config == replace(load_config(None), source=config.source)


def test_values_from_the_file(tmp_path: Path) -> None:
    config = load_text(tmp_path, """
server: {port: 9000, cors_origins: ["https://ha.example.org", "*"]}
log_level: DEBUG
session:
  voice: marin
  speed: 1
  output_modalities: [text]
  turn_detection: {type: semantic_vad, eagerness: high}
  input_transcription: {model: whisper-1, language: en, prompt: ""}
engine:
  workers: 4
  stt: {model: small.en, beam_size: 5, language: null, download: true}
  brain:
    names: [Kitchen Light, {name: Porch Light, domain: light, areas: [Porch]}]
    areas: [Kitchen]
    floors: [Upstairs]
""")
    assert config.server.port == 9000
    assert config.server.cors_origins == ("https://ha.example.org", "*")
    assert config.log_level == "debug"
    assert config.session.speed == 1.0 and isinstance(config.session.speed, float)
    assert config.session.output_modalities == ("text",)
    assert config.session.turn_detection == SemanticVadConfig(
        type="semantic_vad", eagerness="high", create_response=True, interrupt_response=True
    )
    assert config.session.input_transcription == TranscriptionConfig("whisper-1", "en", "")
    assert config.engine.workers == 4
    assert (config.engine.stt.model, config.engine.stt.beam_size, config.engine.stt.language) == ("small.en", 5, None)
    assert config.engine.brain.names == (
        EntityName("Kitchen Light"), EntityName("Porch Light", "light", ("Porch",))
    )
    assert (config.engine.brain.areas, config.engine.brain.floors) == (("Kitchen",), ("Upstairs",))


def test_turn_detection_type_defaults_to_server_vad_and_null_means_manual(tmp_path: Path) -> None:
    tuned = load_text(tmp_path, "session: {turn_detection: {silence_duration_ms: 800, idle_timeout_ms: 6000}}")
    assert tuned.session.turn_detection.type == "server_vad"
    assert tuned.session.turn_detection.silence_duration_ms == 800
    assert tuned.session.turn_detection.idle_timeout_ms == 6000
    assert tuned.session.turn_detection.threshold == 0.5
    manual = load_text(tmp_path, "session: {turn_detection: null}")
    assert manual.session.turn_detection is None


def test_config_is_frozen() -> None:
    config = load_config(None)
    with pytest.raises(AttributeError):
        config.server.port = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.engine.tts.voices["alloy"] = Path("/x")  # type: ignore[index]


def test_api_key_is_not_in_repr(tmp_path: Path) -> None:
    config = load_text(tmp_path, "server: {api_key: s3cret-key}")
    assert config.server.api_key == "s3cret-key"
    assert "s3cret-key" not in repr(config)


def test_llm_brain_options(tmp_path: Path) -> None:
    (tmp_path / "llm.key").write_text("sk-file\n")
    config = load_text(tmp_path, """
engine:
  brain:
    type: auto
    satellites: {kitchen: intents}
    llm: {base_url: "http://127.0.0.1:11434/v1/", model: "llama3.2:3b", api_key: sk-s3cret,
          api_key_file: llm.key, first_token_timeout_s: 4, extra_body: {top_p: 0.9}}
""")
    brain = config.engine.brain
    assert brain.type == "auto" and brain.satellites == {"kitchen": "intents"}
    assert brain.llm.base_url == "http://127.0.0.1:11434/v1" and brain.llm.model == "llama3.2:3b"
    assert brain.llm.api_key_file == tmp_path / "llm.key" and brain.llm.first_token_timeout_s == 4
    assert brain.llm.extra_body == {"top_p": 0.9} and brain.llm.max_retries == 0
    assert "sk-s3cret" not in repr(config)
    assert load_text(tmp_path, "engine: {brain: {type: auto}}").engine.brain.llm is None
    relay = load_text(tmp_path, "engine: {type: relay, upstream: {base_url: 'https://api.openai.com/v1', "
                                "api_key: sk-up, voice: marin}}").engine
    assert relay.type == "relay" and relay.upstream.model == "gpt-realtime" and relay.upstream.voice == "marin"
    assert "sk-up" not in repr(relay)


def test_the_intents_and_auto_brains_share_the_matchers_options(tmp_path: Path) -> None:
    names = "language: de, names: [Kitchen Light], areas: [Kitchen], floors: [Upstairs]"
    intents = load_text(tmp_path, f"engine: {{brain: {{type: intents, {names}}}}}").engine.brain
    auto = load_text(tmp_path, f"engine: {{brain: {{type: auto, {names}}}}}").engine.brain
    assert tuple(intents.floors) == ("Upstairs",) and intents.language == "de"
    assert auto.intents() == intents, "the auto brain runs the intents brain with its own names"
    with pytest.raises(ConfigError, match=r"engine\.brain\.names: unknown option"):
        load_text(tmp_path, "engine: {brain: {type: llm, llm: {base_url: 'http://x/v1', model: m}, names: [x]}}")


@pytest.mark.parametrize(("text", "expected"), [
    ("engine: {brain: {type: llm}}", "engine.brain.llm: required"),
    ("engine: {brain: {type: auto, llm: {model: m}}}", "engine.brain.llm.base_url: required"),
    ("engine: {brain: {type: llm, llm: {base_url: ollama:11434, model: m}}}",
     "engine.brain.llm.base_url: expected an http(s) URL"),
    ("engine: {brain: {type: gpt}}", "engine.brain.type: expected one of intents, llm, auto"),
    ("engine: {brain: {type: auto, satellites: {kitchen: smart}}}", "engine.brain.satellites.kitchen: expected one of"),
    ("engine: {brain: {llm: {base_url: http://x/v1, model: m}}}", "engine.brain.llm: unknown option"),
    ("engine: {type: relay}", "engine.upstream: required"),
    ("engine: {type: relay, upstream: {base_url: http://x/v1}, stt: {}}", "engine.stt: unknown option"),
    ("engine: {type: relay, upstream: {base_url: http://x/v1}, vad: {}}", "engine.vad: unknown option"),
])
def test_bad_llm_brain_options(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in error_of(tmp_path, text)


def test_session_defaults_validate_as_an_sdk_session() -> None:
    realtime = pytest.importorskip("openai.types.realtime")
    session = load_config(None).session.as_session()
    model = realtime.RealtimeSessionCreateRequest.model_validate(session)
    assert model.audio.input.turn_detection.silence_duration_ms == 500
    assert model.audio.output.voice == "alloy"


def test_whisper_names_match_faster_whisper() -> None:
    faster_whisper = pytest.importorskip("faster_whisper")
    assert set(WHISPER_MODEL_NAMES) == set(faster_whisper.available_models())


def test_each_part_declares_its_defaults_once() -> None:
    """A part built in code (no file) gets exactly the defaults the file gets."""
    assert ServerConfig() == load_config(None)
    assert (WhisperConfig(), PiperConfig(), IntentsConfig(), CascadeConfig()) == (
        load_config(None).engine.stt, load_config(None).engine.tts, load_config(None).engine.brain,
        load_config(None).engine,
    )


def test_the_config_loads_without_model_or_network_libraries() -> None:
    code = ("import sys, hearth.server.config as c; c.load_config(None); "
            "print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'faster_whisper', 'piper', 'onnxruntime', 'hassil', 'zeroconf', 'paho', 'amqtt', 'aiohttp', 'pydantic'}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"


@dataclass(frozen=True)
class _EchoBrain:
    type: Literal["echo"] = tag("echo")
    reply: str = option("hello", "what it always says", non_empty)


def test_a_new_kind_is_one_option_class_and_one_table_entry() -> None:
    union = tagged({"intents": IntentsConfig, "echo": _EchoBrain}, "intents", "intents or echo")
    schema = vol.Schema({vol.Optional("brain", default={}): union})
    assert schema({})["brain"] == IntentsConfig()
    assert schema({"brain": {"type": "echo"}})["brain"] == _EchoBrain(reply="hello")
    assert schema({"brain": {"type": "echo", "reply": "hi"}})["brain"].reply == "hi"
    with pytest.raises(vol.MultipleInvalid) as info:
        schema({"brain": {"type": "echo", "language": "en"}})  # an intents option is not an echo option
    assert [str(e) for e in info.value.errors] == ["extra keys not allowed @ data['brain']['language']"]
    with pytest.raises(vol.MultipleInvalid, match=r"expected one of intents, echo \(got 'llm'\).*\['type'\]"):
        schema({"brain": {"type": "llm"}})
    paths = [doc.path for doc in walk(schema)]
    assert paths[:2] == ["brain", "brain.type"] and "brain.reply" in paths and "brain.language" in paths


def test_one_voice_list() -> None:
    from hearth.server.engines.cascade import tts
    from hearth.server.protocol import voices

    assert tts.OPENAI_VOICES is voices.VOICES
    with pytest.raises(ConfigError) as info:
        load_config(None, overrides={"session.voice": "bob"})
    assert f"unknown voice 'bob': use one of {', '.join(voices.VOICES)} or a name" in str(info.value)


# ----------------------------------------------------------------------------- validation errors

BAD_VALUES = [
    ("server: {port: 0}", "server.port: value must be at least 1"),
    ("server: {port: 65536}", "server.port: value must be at most 65535"),
    ("server: {port: '8000'}", "server.port: expected int"),
    ("server: {host: ''}", "server.host: must not be empty"),
    ("server: {api_key: ''}", "server.api_key: must not be empty"),
    ("server: {allow_unauthenticated: yes please}", "server.allow_unauthenticated: expected true or false"),
    ("server: {max_session_duration_s: 0}", "server.max_session_duration_s: value must be at least 1"),
    ("server: {cors_origins: ['https://a.org/']}", "server.cors_origins[0]: expected an origin"),
    ("server: {bind: 1}", "server.bind: unknown option"),
    ("server: 3", "server: expected a dictionary"),
    ("log_level: loud", "log_level: expected one of debug, info, warning, error, critical"),
    ("logging: info", "logging: unknown option"),
    ("session: {speed: 0.2}", "session.speed: value must be at least 0.25"),
    ("session: {speed: 1.6}", "session.speed: value must be at most 1.5"),
    ("session: {speed: fast}", "session.speed: expected a number"),
    ("session: {voice: bob}", "session.voice: unknown voice 'bob'"),
    ("session: {output_modalities: [audio, text]}", "session.output_modalities: expected [audio] or [text]"),
    ("session: {output_modalities: [video]}", "session.output_modalities[0]: expected one of audio, text"),
    ("session: {turn_detection: {type: push_to_talk}}", "session.turn_detection.type: expected one of server_vad, semantic_vad"),
    ("session: {turn_detection: {threshold: 1.5}}", "session.turn_detection.threshold: value must be at most 1"),
    ("session: {turn_detection: {threshold: -0.1}}", "session.turn_detection.threshold: value must be at least 0"),
    ("session: {turn_detection: {silence_duration_ms: -1}}", "session.turn_detection.silence_duration_ms: value must be at least 0"),
    ("session: {turn_detection: {prefix_padding_ms: -1}}", "session.turn_detection.prefix_padding_ms: value must be at least 0"),
    ("session: {turn_detection: {idle_timeout_ms: 10}}", "session.turn_detection.idle_timeout_ms: value must be at least 1000"),
    ("session: {turn_detection: {create_response: 1}}", "session.turn_detection.create_response: expected true or false"),
    ("session: {turn_detection: {type: semantic_vad, eagerness: fast}}", "session.turn_detection.eagerness: expected one of low, medium, high, auto"),
    ("session: {turn_detection: {type: semantic_vad, threshold: 0.5}}", "session.turn_detection.threshold: unknown option"),
    ("session: {turn_detection: {type: server_vad, eagerness: low}}", "session.turn_detection.eagerness: unknown option"),
    ("session: {input_transcription: {model: 1}}", "session.input_transcription.model: expected a string"),
    ("session: {input_transcription: {lang: en}}", "session.input_transcription.lang: unknown option"),
    ("engine: {type: realtime}", "engine.type: expected one of cascade, relay"),
    ("engine: {workers: 0}", "engine.workers: value must be at least 1"),
    ("engine: {stt: {beam_size: x}}", "engine.stt.beam_size: expected int"),
    ("engine: {stt: {beam_size: true}}", "engine.stt.beam_size: expected int"),
    ("engine: {stt: {beam_size: 0}}", "engine.stt.beam_size: value must be at least 1"),
    ("engine: {stt: {cpu_threads: -1}}", "engine.stt.cpu_threads: value must be at least 0"),
    ("engine: {stt: {compute_type: int4}}", "engine.stt.compute_type: expected one of"),
    ("engine: {stt: {model: huge.en}}", "engine.stt.model: 'huge.en' is neither a model name"),
    ("engine: {stt: {download: 'no'}}", "engine.stt.download: expected true or false"),
    ("engine: {stt: {beam: 2}}", "engine.stt.beam: unknown option"),
    ("engine: {vad: {model_path: missing.onnx}}", "engine.vad.model_path: file not found"),
    ("engine: {tts: {default_voice: missing.onnx}}", "engine.tts.default_voice: file not found"),
    ("engine: {tts: {voices: {alloy: missing.onnx}}}", "engine.tts.voices.alloy: file not found"),
    ("engine: {tts: {threads: 0}}", "engine.tts.threads: value must be at least 1"),
    ("engine: {brain: {type: smart}}", "engine.brain.type: expected one of intents, llm, auto"),
    ("engine: {brain: {names: [{domain: light}]}}", "engine.brain.names[0].name: required"),
    ("engine: {brain: {names: [{name: Lamp, room: Kitchen}]}}", "engine.brain.names[0].room: unknown option"),
    ("engine: {brain: {areas: [1]}}", "engine.brain.areas[0]: expected a string"),
]


@pytest.mark.parametrize(("text", "expected"), BAD_VALUES, ids=[e.split(":")[0] for _, e in BAD_VALUES])
def test_each_bad_value_names_its_key_and_the_file(tmp_path: Path, text: str, expected: str) -> None:
    message = error_of(tmp_path, text)
    assert f"{tmp_path / 'server.yaml'}: {expected}" in message


def test_all_errors_are_reported_at_once(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_text(tmp_path, "server: {port: 0}\nengine: {workers: 0, stt: {beam_size: x}}")
    keys = [key for key, _ in info.value.errors]
    assert keys == ["engine.stt.beam_size", "engine.workers", "server.port"]
    assert info.value.source == tmp_path / "server.yaml"
    assert len(str(info.value).splitlines()) == 3


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("server: [", "line 1, column 10: invalid YAML"),
        ("server: {port: 1}\nserver: {port: 2}\n", "line 2, column 1: invalid YAML: duplicate key 'server'"),
        ("- server\n", "expected a mapping of options at the top level"),
    ],
)
def test_unreadable_yaml(tmp_path: Path, text: str, expected: str) -> None:
    assert f"{tmp_path / 'server.yaml'}: {expected}" in error_of(tmp_path, text)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the configuration"):
        load_config(tmp_path / "nope.yaml")


# ----------------------------------------------------------------------------- paths


def test_paths_are_relative_to_the_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    etc = tmp_path / "etc"
    voice = make_voice(etc / "voices", "lessac.onnx")
    vad = make_voice(etc, "vad.onnx", with_json=False)
    (etc / "whisper").mkdir()
    monkeypatch.chdir(tmp_path)  # somewhere else than the file's folder
    config = load_config(write(etc, """
session: {voice: lessac}
engine:
  vad: {model_path: vad.onnx}
  stt: {model: ./whisper}
  tts: {default_voice: voices/lessac.onnx, voices: {alloy: voices/lessac.onnx, lessac: voices/lessac.onnx}}
"""))
    assert config.engine.vad.model_path == vad
    assert config.engine.stt.model == str(etc / "whisper")
    assert config.engine.tts.default_voice == voice
    assert dict(config.engine.tts.voices) == {"alloy": voice, "lessac": voice}
    assert config.session.voice == "lessac"  # a custom name defined in engine.tts.voices


def test_voice_without_its_json_config(tmp_path: Path) -> None:
    make_voice(tmp_path, "bare.onnx", with_json=False)
    message = error_of(tmp_path, "engine: {tts: {voices: {alloy: bare.onnx}}}")
    assert "engine.tts.voices.alloy: piper voice config not found" in message
    assert "bare.onnx.json" in message


def test_voice_must_be_an_onnx_file(tmp_path: Path) -> None:
    (tmp_path / "voice.txt").write_text("x")
    assert "expected a piper voice model ending in .onnx" in error_of(
        tmp_path, "engine: {tts: {default_voice: voice.txt}}"
    )


# ----------------------------------------------------------------------------- precedence and env


def test_env_var_supplies_the_api_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(API_KEY_ENV, "from-env")
    assert load_config(None).server.api_key == "from-env"
    assert load_text(tmp_path, "server: {port: 9000}").server.api_key == "from-env"
    assert load_text(tmp_path, "server: {api_key: null}").server.api_key == "from-env"


def test_file_key_wins_over_env_and_override_wins_over_both(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(API_KEY_ENV, "from-env")
    assert load_text(tmp_path, "server: {api_key: from-file}").server.api_key == "from-file"
    config = load_config(write(tmp_path, "server: {api_key: from-file}"), overrides={"server.api_key": "from-cli"})
    assert config.server.api_key == "from-cli"


def test_blank_env_var_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(API_KEY_ENV, "  ")
    assert load_config(None).server.api_key is None


def test_overrides_win_and_none_is_skipped(tmp_path: Path) -> None:
    path = write(tmp_path, "server: {host: 127.0.0.2, port: 9000}\nlog_level: warning")
    config = load_config(path, overrides={"server.host": None, "server.port": 9100, "log_level": "debug"})
    assert (config.server.host, config.server.port, config.log_level) == ("127.0.0.2", 9100, "debug")


def test_bad_override_names_its_key() -> None:
    with pytest.raises(ConfigError, match=r"^server\.port: value must be at most 65535$"):
        load_config(None, overrides={"server.port": 70000})


# ----------------------------------------------------------------------------- security rule


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "hearth.local"])
def test_reachable_bind_without_a_key_is_refused(tmp_path: Path, host: str) -> None:
    message = error_of(tmp_path, f"server: {{host: '{host}'}}")
    assert "server.api_key:" in message
    assert API_KEY_ENV in message and "allow_unauthenticated" in message
    with pytest.raises(ConfigError, match=API_KEY_ENV):
        load_config(None, overrides={"server.host": host})


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost", "LOCALHOST"])
def test_loopback_needs_no_key(host: str) -> None:
    assert load_config(None, overrides={"server.host": host}).server.api_key is None


def test_reachable_bind_with_a_key_or_an_explicit_opt_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_text(tmp_path, "server: {host: 0.0.0.0, api_key: k}").server.api_key == "k"
    assert load_text(tmp_path, "server: {host: 0.0.0.0, allow_unauthenticated: true}").server.api_key is None
    monkeypatch.setenv(API_KEY_ENV, "env-key")
    assert load_text(tmp_path, "server: {host: 0.0.0.0}").server.api_key == "env-key"


# ----------------------------------------------------------------------------- docs and examples


def _render(value: Any) -> str:
    """A default as docs/configuration.md writes it (YAML flow style)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_render(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_render(v)}" for k, v in value.items()) + "}"
    return str(value)


def _doc_rows() -> dict[str, list[str]]:
    rows = {}
    for line in DOCS.read_text().splitlines():
        if m := re.match(r"^\| `([\w.]+)` \|(.*)\|$", line):
            rows[m[1]] = [cell.strip() for cell in m[2].split("|")]
    return rows


def _is_section(option: Any, options: tuple[Any, ...]) -> bool:
    return option.default == {} and any(o.path.startswith(option.path + ".") for o in options)


def test_every_option_is_documented_with_its_default() -> None:
    options = documented_options()
    assert len(options) > 40
    text, rows = DOCS.read_text(), _doc_rows()
    missing = [o.path for o in options if f"`{o.path}`" not in text]
    assert not missing, f"options missing from {DOCS.name}: {missing}"
    for option in options:  # noqa: F402 - the helper import is not used below
        if _is_section(option, options):
            continue
        assert option.path in rows, f"{option.path} has no table row in {DOCS.name}"
        assert option.description, f"{option.path} has no description in the schema"
        _type, unit, default, meaning = rows[option.path]
        assert unit == (option.unit or ""), f"{option.path}: unit {unit!r} in the docs, {option.unit!r} declared"
        if option.default is not REQUIRED:
            assert default.strip("`") == _render(option.default), option.path
        assert meaning, option.path


def test_docs_list_no_option_the_schema_lacks() -> None:
    known = {o.path for o in documented_options()}
    assert not set(_doc_rows()) - known


def _yaml_blocks() -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", DOCS.read_text(), flags=re.S)


@pytest.mark.parametrize("index", range(4))
def test_docs_examples_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, index: int) -> None:
    blocks = _yaml_blocks()
    assert len(blocks) == 4
    monkeypatch.setenv(API_KEY_ENV, "example-key")  # the house example binds 0.0.0.0
    (tmp_path / "openai.key").write_text("sk-example\n")  # the OpenAI example's key file
    load_text(tmp_path, blocks[index])


def test_firmware_example_loads_and_spells_out_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match=API_KEY_ENV):
        load_config(EXAMPLE)  # it binds 0.0.0.0, so the key must come from the environment
    monkeypatch.setenv(API_KEY_ENV, "example-key")
    config = load_config(EXAMPLE)
    assert config.server.host == "0.0.0.0"
    defaults = load_config(None, overrides={"server.host": "0.0.0.0"})
    assert (config.session, config.engine, config.log_level) == (defaults.session, defaults.engine, defaults.log_level)
