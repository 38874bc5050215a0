"""Real models shared by the cascade tests: loaded once per test session."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import soxr
from piper import SynthesisConfig

from hearth.server.engines.cascade.stt import WhisperTranscriber
from hearth.server.engines.cascade.tts import PiperSynthesizer
from hearth.server.session.interfaces import PIPELINE_RATE


@pytest.fixture(scope="session")
def executor() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(4, thread_name_prefix="test-cascade")
    yield pool
    pool.shutdown(wait=True)


@pytest.fixture(scope="session")
def synthesizer(executor: ThreadPoolExecutor) -> PiperSynthesizer:
    synth = PiperSynthesizer(executor=executor)
    synth.load("alloy")
    return synth


@pytest.fixture(scope="session")
def transcriber(executor: ThreadPoolExecutor) -> WhisperTranscriber:
    stt = WhisperTranscriber(executor=executor)
    stt.load()
    return stt


@pytest.fixture(scope="session")
def speak_16k(synthesizer: PiperSynthesizer) -> Callable[[str], np.ndarray]:
    """Piper speech for a text as 16 kHz float32 with 0.3 s of silence around it.

    Piper's noise is turned off: its default noise makes every rendering different,
    and tiny.en occasionally hears one of them wrong ("kitchen white").
    """
    cache: dict[str, np.ndarray] = {}
    voice = synthesizer.load("alloy")
    clean = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)
    pad = np.zeros(int(0.3 * PIPELINE_RATE), dtype=np.float32)

    def speak(text: str) -> np.ndarray:
        if text not in cache:
            native = np.concatenate([c.audio_float_array for c in voice.synthesize(text, clean)])
            speech = soxr.resample(native, voice.config.sample_rate, PIPELINE_RATE).astype(np.float32)
            cache[text] = np.concatenate([pad, speech, pad])
        return cache[text]

    return speak


@pytest.fixture(scope="session")
def kitchen_light(speak_16k: Callable[[str], np.ndarray]) -> np.ndarray:
    return speak_16k("Turn on the kitchen light.")

