"""Edge VAD engines and the end-of-speech logic."""

from __future__ import annotations

import numpy as np
import pytest

from hearth.satellite.vad import Endpointer, create_vad
from hearth.wire import AudioStopReason


def frames(audio: np.ndarray, samples: int = 320):
    for i in range(0, len(audio) - samples + 1, samples):
        yield audio[i : i + samples].tobytes()


@pytest.mark.parametrize("engine", ["webrtcvad", "micro"])
def test_vad_engines_tell_speech_from_silence_and_noise(engine, speech):
    vad = create_vad(engine)
    spoken = [vad.is_speech(f) for f in frames(speech.say("Turn on the kitchen light, please."))]
    assert sum(spoken) / len(spoken) > 0.3
    after = [vad.is_speech(f) for f in frames(speech.silence(2.0))]
    assert not any(after[50:]), "silence is silence again within a second"
    assert not any(create_vad(engine).is_speech(f) for f in frames(speech.silence(1.0)))
    rng = np.random.default_rng(0)
    noise = (rng.standard_normal(16000) * 300).astype(np.int16)
    assert sum(create_vad(engine).is_speech(f) for f in frames(noise)) / 50 < 0.2


def test_micro_vad_ignores_steady_noise_even_after_speech(speech):
    """Why `micro` is the default: webrtcvad, once it has heard speech, calls fan-like noise speech."""
    vad = create_vad("micro")
    for f in frames(speech.say("Turn on the kitchen light.")):
        vad.is_speech(f)
    rng = np.random.default_rng(0)
    for std in (300, 3000):
        noise = (rng.standard_normal(3 * 16000) * std).astype(np.int16)
        flagged = [vad.is_speech(f) for f in frames(noise)]
        assert sum(flagged[50:]) / len(flagged[50:]) < 0.1  # after its ~1 s tail


def test_webrtcvad_accepts_30ms_and_longer_frames(speech):
    vad = create_vad("webrtcvad")
    audio = speech.say("Turn on the kitchen light.")
    assert any(vad.is_speech(f) for f in frames(audio, 480))
    assert any(vad.is_speech(f) for f in frames(audio, 1280))


def run(endpointer: Endpointer, pattern: list[bool]) -> tuple[int, str | None]:
    for index, voiced in enumerate(pattern):
        reason = endpointer.process(voiced)
        if reason is not None:
            return index, reason
    return len(pattern), None


def test_end_of_speech_after_trailing_silence():
    ep = Endpointer(frame_ms=20, min_speech_ms=100, silence_ms=400)
    index, reason = run(ep, [False] * 10 + [True] * 50 + [False] * 100)
    assert reason == AudioStopReason.END_OF_SPEECH
    assert index == 10 + 50 + 20 - 1


def test_short_pauses_do_not_end_the_utterance():
    ep = Endpointer(frame_ms=20, min_speech_ms=100, silence_ms=400)
    pattern = ([True] * 20 + [False] * 15) * 5 + [False] * 30
    index, reason = run(ep, pattern)
    assert reason == AudioStopReason.END_OF_SPEECH and index == 175 - 15 + 20 - 1


def test_a_click_is_not_speech():
    ep = Endpointer(frame_ms=20, min_speech_ms=100, silence_ms=400, no_speech_timeout_ms=2000)
    index, reason = run(ep, ([True] * 2 + [False] * 10) * 20)
    assert reason == AudioStopReason.NO_SPEECH and index == 99


def test_utterance_cap():
    ep = Endpointer(frame_ms=20, max_ms=1000)
    index, reason = run(ep, [True] * 100)
    assert reason == AudioStopReason.MAX_LENGTH and index == 49


def test_reset():
    ep = Endpointer(frame_ms=20, min_speech_ms=40, silence_ms=100)
    run(ep, [True] * 10)
    ep.reset()
    assert (ep.elapsed_ms, ep.in_speech) == (0, False)
