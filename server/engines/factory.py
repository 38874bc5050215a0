"""Builds the configured engine from the server config (part of the composition root)."""

from __future__ import annotations

from concurrent.futures import Executor
from typing import Any

from ..config import ServerConfig
from ..session.interfaces import SpeechEngine


def build_engine(config: ServerConfig, executor: Executor) -> SpeechEngine:
    """Load every model the engine needs. Slow (model loading): call it off the event loop."""
    engine = config.engine
    if engine.type != "cascade":  # the schema admits only "cascade" today
        raise ValueError(f"unknown engine type {engine.type!r}")
    from .cascade.brain_intents import IntentsBrain, IntentsConfig
    from .cascade.engine import CascadeEngine
    from .cascade.stt import WhisperConfig, WhisperTranscriber
    from .cascade.tts import PiperConfig, PiperSynthesizer

    stt, tts, brain = engine.stt, engine.tts, engine.brain
    transcriber = WhisperTranscriber(
        WhisperConfig(model=stt.model, compute_type=stt.compute_type, cpu_threads=stt.cpu_threads,
                      beam_size=stt.beam_size, language=stt.language, download=stt.download),
        executor,
    )
    synthesizer = PiperSynthesizer(
        PiperConfig(voices={name: str(path) for name, path in tts.voices.items()},
                    default_voice=str(tts.default_voice) if tts.default_voice else None, threads=tts.threads),
        executor,
    )
    intents = IntentsBrain(IntentsConfig(
        language=brain.language,
        names=[{"name": n.name, "domain": n.domain, "areas": list(n.areas)} for n in brain.names],
        areas=list(brain.areas),
        floors=list(brain.floors),
    ))
    return CascadeEngine(intents, transcriber, synthesizer, engine.vad.model_path)


def session_defaults(config: ServerConfig) -> dict[str, Any]:
    """The configured session defaults in Realtime wire form."""
    return config.session.as_session()
