"""Builds the configured engine from the server config (part of the composition root).

One builder per `engine.type` (`ENGINE_BUILDERS`) and, for the cascade, one per
`engine.brain.type` (`BRAIN_BUILDERS`); the option classes they receive are declared by
the engines themselves (`engines/cascade/options.py`) and listed in `config.ENGINES`.
Model libraries are imported here only when an engine is built.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

from ..config import ServerConfig
from ..errors import StartupError
from ..session.interfaces import SpeechEngine
from .cascade.options import AutoConfig, BrainConfig, CascadeConfig, IntentsConfig, LlmBrainConfig
from .relay.options import RelayConfig

_LOGGER = logging.getLogger(__name__)


def build_engine(config: ServerConfig, executor: Executor) -> SpeechEngine:
    """Load every model the engine needs. Slow (model loading): call it off the event loop."""
    return ENGINE_BUILDERS[config.engine.type](config.engine, executor)


def _cascade(engine: CascadeConfig, executor: Executor) -> SpeechEngine:
    from .cascade.engine import CascadeEngine
    from .cascade.stt import WhisperTranscriber
    from .cascade.tts import PiperSynthesizer

    brain = BRAIN_BUILDERS[engine.brain.type](engine.brain)
    return CascadeEngine(brain, WhisperTranscriber(engine.stt, executor), PiperSynthesizer(engine.tts, executor),
                         engine.vad.model_path, acknowledge=engine.acknowledge,
                         acknowledge_realtime=engine.acknowledge_realtime, quick_turn_end=engine.quick_turn_end)


def _intents(brain: IntentsConfig) -> Any:
    from .cascade.brain_intents import IntentsBrain

    try:
        return IntentsBrain(brain)
    except ValueError as err:  # a language home-assistant-intents has no sentences for
        raise StartupError(f"engine.brain.language: {err}") from err


def _llm(brain: LlmBrainConfig) -> Any:
    from .cascade.brain_llm import LlmBrain

    try:
        return LlmBrain(brain.llm)
    except ValueError as err:  # an unreadable key file
        raise StartupError(f"engine.brain.llm: {err}") from err


def _auto(brain: AutoConfig) -> Any:
    intents = _intents(brain.intents())  # type: ignore[arg-type]
    if brain.llm is None:
        _LOGGER.warning("brain auto: no engine.brain.llm is configured, so this is the intents brain alone "
                        "(what the intents decline gets a short sorry)")
        return intents
    from .cascade.brain_auto import AutoBrain

    _LOGGER.info("brain auto: intents first, then %s at %s", brain.llm.model, brain.llm.base_url)
    return AutoBrain(intents, _llm(LlmBrainConfig(llm=brain.llm)), satellites=dict(brain.satellites))  # type: ignore[arg-type]


def build_brain(brain: BrainConfig) -> Any:
    """The brain `engine.brain` describes."""
    return BRAIN_BUILDERS[brain.type](brain)


def _relay(engine: RelayConfig, executor: Executor) -> SpeechEngine:
    from .relay.engine import RelayEngine

    try:
        return RelayEngine(engine.upstream)
    except ValueError as err:  # an unreadable key file
        raise StartupError(f"engine.upstream: {err}") from err


#: `engine.type` -> the builder of that engine (the schema admits only these keys).
ENGINE_BUILDERS: dict[str, Callable[[Any, Executor], SpeechEngine]] = {"cascade": _cascade, "relay": _relay}
#: `engine.brain.type` -> the builder of that brain.
BRAIN_BUILDERS: dict[str, Callable[[Any], Any]] = {"intents": _intents, "llm": _llm, "auto": _auto}


def session_defaults(config: ServerConfig) -> dict[str, Any]:
    """The configured session defaults in Realtime wire form."""
    return config.session.as_session()
