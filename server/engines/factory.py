"""Builds the configured engine from the server config (part of the composition root).

One builder per `engine.type` (`ENGINE_BUILDERS`) and, for the cascade, one per
`engine.brain.type` (`BRAIN_BUILDERS`); the option classes they receive are declared by
the engines themselves (`engines/cascade/options.py`) and listed in `config.ENGINES`.
Model libraries are imported here only when an engine is built.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

from ..config import ServerConfig
from ..errors import StartupError
from ..session.interfaces import SpeechEngine
from .cascade.options import CascadeConfig, IntentsConfig


def build_engine(config: ServerConfig, executor: Executor) -> SpeechEngine:
    """Load every model the engine needs. Slow (model loading): call it off the event loop."""
    return ENGINE_BUILDERS[config.engine.type](config.engine, executor)


def _cascade(engine: CascadeConfig, executor: Executor) -> SpeechEngine:
    from .cascade.engine import CascadeEngine
    from .cascade.stt import WhisperTranscriber
    from .cascade.tts import PiperSynthesizer

    brain = BRAIN_BUILDERS[engine.brain.type](engine.brain)
    return CascadeEngine(brain, WhisperTranscriber(engine.stt, executor), PiperSynthesizer(engine.tts, executor),
                         engine.vad.model_path)


def _intents(brain: IntentsConfig) -> Any:
    from .cascade.brain_intents import IntentsBrain

    try:
        return IntentsBrain(brain)
    except ValueError as err:  # a language home-assistant-intents has no sentences for
        raise StartupError(f"engine.brain.language: {err}") from err


#: `engine.type` -> the builder of that engine (the schema admits only these keys).
ENGINE_BUILDERS: dict[str, Callable[[Any, Executor], SpeechEngine]] = {"cascade": _cascade}
#: `engine.brain.type` -> the builder of that brain.
BRAIN_BUILDERS: dict[str, Callable[[Any], Any]] = {"intents": _intents}


def session_defaults(config: ServerConfig) -> dict[str, Any]:
    """The configured session defaults in Realtime wire form."""
    return config.session.as_session()
