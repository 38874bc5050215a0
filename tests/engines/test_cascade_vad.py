"""Silero v6 VAD on plain onnxruntime, with the model faster-whisper ships."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from hearth.server.engines.cascade.vad import FRAME_SAMPLES, SileroVad, default_model_path


def probabilities(vad: SileroVad, audio: np.ndarray) -> np.ndarray:
    frames = len(audio) // FRAME_SAMPLES
    return np.array([vad.probability(audio[i * FRAME_SAMPLES : (i + 1) * FRAME_SAMPLES]) for i in range(frames)])


def test_bundled_model_is_found_through_the_package() -> None:
    path = default_model_path()
    assert path.name == "silero_vad_v6.onnx"
    assert path.is_file()
    assert "faster_whisper" in path.parts


def test_speech_scores_high(speak_16k: Callable[[str], np.ndarray]) -> None:
    probs = probabilities(SileroVad(), speak_16k("Set the living room lamp to fifty percent."))
    assert probs.max() > 0.9
    assert (probs > 0.5).mean() > 0.4
    # The 0.3 s of leading silence is not speech.
    assert probs[:5].max() < 0.2


def test_silence_and_white_noise_score_near_zero() -> None:
    vad = SileroVad()
    silence = np.zeros(FRAME_SAMPLES * 60, dtype=np.float32)
    noise = (np.random.default_rng(7).standard_normal(FRAME_SAMPLES * 60) * 0.1).astype(np.float32)
    assert probabilities(vad, silence).max() < 0.1
    vad.reset()
    probs = probabilities(vad, noise)
    assert probs.max() < 0.2
    assert probs.mean() < 0.05


def test_state_is_per_instance_and_reset_restores_a_fresh_stream(kitchen_light: np.ndarray) -> None:
    alone = probabilities(SileroVad(), kitchen_light)
    a, b = SileroVad(), SileroVad()
    interleaved = []
    for i in range(len(kitchen_light) // FRAME_SAMPLES):
        frame = kitchen_light[i * FRAME_SAMPLES : (i + 1) * FRAME_SAMPLES]
        interleaved.append(a.probability(frame))
        b.probability(np.zeros(FRAME_SAMPLES, dtype=np.float32))
    np.testing.assert_allclose(interleaved, alone, atol=1e-6)
    a.reset()
    np.testing.assert_allclose(probabilities(a, kitchen_light), alone, atol=1e-6)


def test_rejects_frames_of_the_wrong_size() -> None:
    with pytest.raises(ValueError, match="512"):
        SileroVad().probability(np.zeros(480, dtype=np.float32))
