"""The cascade engine's options, each declared once: VAD, Whisper STT, piper TTS, the brains.

Each stage module (`vad.py`, `stt.py`, `tts.py`, `brain_intents.py`) takes its class from
here; `server/config.py` reads the same classes from the YAML file (`engine.*`), so the
default a stage gets when built in code is the one the file gets. This module imports no
model library: the config loads without faster-whisper, piper or hassil.

A new brain is an option class with `type = tag("<name>")` and one entry in `BRAINS`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

import voluptuous as vol

from hearth.server.options import (
    REQUIRED,
    Maybe,
    boolean,
    existing_file,
    integer,
    list_of,
    mapping_of,
    non_empty,
    number,
    one_of,
    option,
    relative_path,
    schema_of,
    section,
    string,
    tag,
    tagged,
)

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


def _any(value: Any) -> Any:
    return value


def whisper_model(value: Any) -> str | None:
    """A faster-whisper model name, or an existing CTranslate2 directory (as an absolute path)."""
    if value is None or non_empty(value) in WHISPER_MODEL_NAMES:
        return value
    path = relative_path(value)
    if path.is_dir():
        return str(path)
    raise vol.Invalid(
        f"{value!r} is neither a model name ({', '.join(WHISPER_MODEL_NAMES)}) "
        f"nor a CTranslate2 model directory (no such directory: {path})"
    )


def piper_voice(value: Any) -> Path:
    """A piper `.onnx` voice whose `.onnx.json` config lies next to it."""
    path = existing_file(value)
    if path.suffix != ".onnx":
        raise vol.Invalid(f"expected a piper voice model ending in .onnx, got {path}")
    if not Path(f"{path}.json").is_file():
        raise vol.Invalid(f"piper voice config not found: {path}.json (piper reads it next to the model)")
    return path


# ----------------------------------------------------------------------------- stages


@dataclass(frozen=True)
class VadConfig:
    """Options of the server's Silero VAD (`vad.py`)."""

    model_path: Path | None = option(None, "Silero VAD .onnx file; null = the one faster-whisper ships",
                                     Maybe(existing_file))


@dataclass(frozen=True)
class WhisperConfig:
    """Options of the faster-whisper stage (`stt.py`).

    In code, `model` may also be a Hugging Face repo id; the file admits a model name or a
    directory. Decoding is otherwise fixed for latency (see `stt.py`).
    """

    model: str | None = option(None, "null = bundled Whisper tiny.en; a model name or a CTranslate2 directory",
                               whisper_model)
    #: "int8" was the fastest on a 2-core CPU.
    compute_type: str = option("int8", "CTranslate2 compute type", one_of(*COMPUTE_TYPES))
    cpu_threads: int = option(2, "threads per transcription; 0 = CTranslate2's default", integer(0),
                              unit="threads")
    beam_size: int = option(1, "beam search width; 1 = greedy, fastest", integer(1))
    #: A request's own language wins. None: detect (multilingual models only).
    language: str | None = option("en", "ISO-639-1 code; null = detect", Maybe(non_empty), unit="ISO-639-1 code")
    #: Never by default: a missing model fails at start with how to fetch it.
    download: bool = option(False, "allow downloading a named model that is not cached", boolean)


@dataclass(frozen=True)
class PiperConfig:
    """Options of the piper stage (`tts.py`).

    In code, `default_voice` may also name a key of `voices`; the file gives a path.
    """

    default_voice: Path | str | None = option(
        None, "piper .onnx used for unmapped voices; null = bundled en_US-joe-medium", Maybe(piper_voice))
    #: Voice name (an OpenAI voice or any custom name) -> piper .onnx (its config: the path + ".json").
    voices: Mapping[str, Path | str] = option({}, "voice name -> piper .onnx path", mapping_of(non_empty, piper_voice))
    #: None: onnxruntime's default (all cores; ~2x faster than 1 thread on a 2-core machine).
    threads: int | None = option(None, "ONNX Runtime threads per synthesis; null = its default",
                                 Maybe(integer(1)), unit="threads")
    #: Out-of-band responses are bulk work: on fewer threads a live turn keeps a core (a second session, ~60 MB).
    bulk_threads: int | None = option(1, "ONNX Runtime threads per bulk synthesis (out-of-band responses); "
                                      "null = as `threads`", Maybe(integer(1)), unit="threads")


# ----------------------------------------------------------------------------- brains


@dataclass(frozen=True)
class EntityName:
    """An entity the intents brain always knows (besides those a client sends)."""

    name: str = option(REQUIRED, "the entity's name as people say it", non_empty)
    domain: str | None = option(None, "Home Assistant domain, e.g. light", Maybe(non_empty))
    areas: tuple[str, ...] = option([], "areas the entity is in", list_of(non_empty))


_ENTITY_NAME = vol.Schema(schema_of(EntityName))


def entity_name(value: Any) -> EntityName:
    """`Kitchen Light` or `{name: Kitchen Light, domain: light, areas: [Kitchen]}`."""
    if isinstance(value, str):
        return EntityName(non_empty(value))
    return _ENTITY_NAME(value)


@dataclass(frozen=True)
class IntentsNames:
    """What the intent matcher speaks and knows besides the client's: the intents and auto brains' options."""

    #: Language of home-assistant-intents' sentences ("en", "de", ...).
    language: str = option("en", "intent language", non_empty, unit="language code")
    #: In code also a plain mapping (or an object with these attributes) with `name` (or `names`),
    #: optional `aliases`, `domain` (or `entity_id`) and `areas`.
    names: Sequence[EntityName | str | Mapping[str, Any] | Any] = option(
        [], "entity names known besides the client's: a string or {name, domain, areas}", list_of(entity_name))
    areas: Sequence[str] = option([], "area names known besides the client's", list_of(non_empty))
    floors: Sequence[str] = option([], "floor names known besides the client's", list_of(non_empty))


@dataclass(frozen=True)
class IntentsConfig(IntentsNames):
    """Options of the intents brain (`brain_intents.py`)."""

    type: Literal["intents"] = tag("intents")


def http_url(value: Any) -> str:
    """An http(s) URL such as `http://127.0.0.1:11434/v1` (a trailing slash dropped)."""
    if not re.fullmatch(r"https?://[^/\s]+(/\S*)?", non_empty(value)):
        raise vol.Invalid(f"expected an http(s) URL like http://127.0.0.1:11434/v1, got {value!r}")
    return value.rstrip("/")


def read_key(api_key: str | None, api_key_file: Path | str | None, owner: str) -> str:
    """An API key: the key itself, else the file's content, else a placeholder local servers ignore."""
    if api_key:
        return api_key
    if api_key_file:
        path = Path(api_key_file).expanduser()
        try:
            key = path.read_text(encoding="utf-8").strip()
        except OSError as err:
            raise ValueError(f"{owner}: cannot read api_key_file {str(path)!r}: {err.strerror}") from err
        if not key:
            raise ValueError(f"{owner}: api_key_file {str(path)!r} is empty")
        return key
    return "no-key"


@dataclass(frozen=True)
class LlmConfig:
    """An OpenAI-compatible Chat Completions endpoint (`brain_llm.py`): `engine.brain.llm`."""

    #: The endpoint's root, the part before `/chat/completions`.
    base_url: str = option(REQUIRED, "the endpoint's OpenAI-compatible root, e.g. http://127.0.0.1:11434/v1",
                           http_url)
    model: str = option(REQUIRED, "model name as the endpoint knows it", non_empty)
    api_key: str | None = option(None, "API key; null = api_key_file, else none (local servers)", Maybe(non_empty),
                                 secret=True)
    api_key_file: Path | str | None = option(None, "file holding the API key", Maybe(existing_file))
    connect_timeout_s: float = option(5.0, "seconds to connect", number(0.1), unit="seconds")
    first_token_timeout_s: float = option(15.0, "from the request to the first streamed chunk", number(0.1),
                                          unit="seconds")
    total_timeout_s: float = option(60.0, "for a whole reply", number(0.1), unit="seconds")
    slow_first_token_s: float = option(1.5, "a first token later than this is logged as slow", number(0),
                                       unit="seconds")
    #: Each retry (backoff) delays a spoken answer while the listener waits, hence none.
    max_retries: int = option(0, "client retries of connection errors, 429 and 5xx", integer(0, 5))
    temperature: float | None = option(None, "sampling temperature; null = the endpoint's default",
                                       Maybe(number(0, 2)))
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = option(
        "max_tokens", "field for max_output_tokens: max_tokens or max_completion_tokens",
        one_of("max_tokens", "max_completion_tokens"))
    stream_usage: bool = option(True, "ask for token usage in the stream (stream_options.include_usage)", boolean)
    extra_body: Mapping[str, Any] = option({}, "extra JSON fields for every request", mapping_of(non_empty, _any))
    headers: Mapping[str, str] = option({}, "extra HTTP headers", mapping_of(non_empty, string))

    def key(self) -> str:
        return read_key(self.api_key, self.api_key_file, "llm brain")


@dataclass(frozen=True, kw_only=True)
class LlmBrainConfig:
    """Options of the llm brain: every turn goes to the endpoint."""

    type: Literal["llm"] = tag("llm")
    llm: LlmConfig = option(REQUIRED, "the Chat Completions endpoint of the llm and auto brains",
                            schema_of(LlmConfig))


#: The auto brain's routes: both brains in turn, or one of them.
ROUTES = ("auto", "intents", "llm")


@dataclass(frozen=True)
class AutoConfig(IntentsNames):
    """Options of the auto brain (`brain_auto.py`): the intents first, the LLM for what they decline."""

    type: Literal["auto"] = tag("auto")
    #: None: the auto brain is the intents brain, and says so at start.
    llm: LlmConfig | None = option(None, "the Chat Completions endpoint of the llm and auto brains",
                                   Maybe(schema_of(LlmConfig)))
    satellites: Mapping[str, str] = option({}, "satellite id -> auto, intents or llm: the route for its sessions",
                                           mapping_of(non_empty, one_of(*ROUTES)))

    def intents(self) -> IntentsConfig:
        """The intents brain it runs first: the same names."""
        return IntentsConfig(**{f.name: getattr(self, f.name) for f in fields(IntentsNames)})


#: `engine.brain.type` -> its option class. `server/engines/factory.py` holds the builders.
BRAINS: Mapping[str, type] = {"intents": IntentsConfig, "llm": LlmBrainConfig, "auto": AutoConfig}

#: What `engine.brain` holds: one of the classes in `BRAINS`.
BrainConfig = IntentsConfig | LlmBrainConfig | AutoConfig


# ----------------------------------------------------------------------------- the engine


@dataclass(frozen=True)
class CascadeConfig:
    """`engine.type: cascade`: server VAD -> Whisper -> a brain -> sentence-chunked piper."""

    type: Literal["cascade"] = tag("cascade")
    workers: int = option(2, "inference threads shared by all sessions", integer(1), unit="threads")
    #: Said the moment a device command is understood, from cached audio (~0 ms), while the
    #: call goes out and its confirmation is prepared.
    acknowledge: str | None = option("Okay.", "spoken to satellites before a device command's tool call; null = nothing",
                                     Maybe(non_empty))
    #: Off by default: a Realtime client then sees an assistant message before each call.
    acknowledge_realtime: bool = option(False, "also acknowledge device commands of Realtime clients", boolean)
    #: The staged end of turn's first stage (see `fast_stt.py`, `session/end_of_turn.py`).
    quick_turn_end: bool = option(True, "fast transcript + intent match may end a semantic_vad turn early", boolean)
    vad: VadConfig = section(VadConfig, "server voice activity detection")
    stt: WhisperConfig = section(WhisperConfig, "speech-to-text (faster-whisper)")
    tts: PiperConfig = section(PiperConfig, "text-to-speech (piper)")
    brain: BrainConfig = option({}, "what writes the reply",
                                tagged(BRAINS, "intents", "intents (Home Assistant's local matcher), llm (an "
                                       "OpenAI-compatible endpoint) or auto (intents first, the llm for the rest)"))

