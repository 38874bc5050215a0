"""Real models shared by the cascade tests: loaded once per test session."""

from __future__ import annotations

import threading
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


class PiperRuns:
    """Wraps a voice's onnxruntime session: counts model runs (one per sentence) and can hold one.

    Run number `hold` (if set) waits until `release` is set; `held` tells that it has started.
    Tests assert what piper did (how many sentences it synthesized) rather than how long it took.
    """

    def __init__(self, session: object, hold: int | None = None) -> None:
        self.session = session
        self.hold = hold
        self.runs = 0
        self.held = threading.Event()
        self.release = threading.Event()

    def run(self, *args: object, **kwargs: object) -> object:
        self.runs += 1
        if self.runs == self.hold:
            self.held.set()
            assert self.release.wait(60), "the test never released the held sentence"
        return self.session.run(*args, **kwargs)


@pytest.fixture
def piper_runs(synthesizer: PiperSynthesizer, monkeypatch: pytest.MonkeyPatch) -> PiperRuns:
    """The shared voice's model runs, counted for this test (restored after it)."""
    voice = synthesizer.load("alloy")
    runs = PiperRuns(voice.session)
    monkeypatch.setattr(voice, "session", runs)
    return runs


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

