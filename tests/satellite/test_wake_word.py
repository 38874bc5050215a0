"""Wake word detection on piper-synthesized speech, with both engines."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from hearth.satellite.wake import (
    BUILTIN_MICRO,
    BUILTIN_OPENWAKEWORD,
    MicroWakeWordDetector,
    OpenWakeWordDetector,
    WakeWordDetector,
    WakeWordError,
    create_detector,
    pyopen_models_dir,
)

ENGINES = ["openwakeword", "micro"]
FRAME = 320  # 20 ms, as the satellite feeds it


def run(detector: WakeWordDetector, audio: np.ndarray) -> list[tuple[float, str, float]]:
    """Feed audio in 20 ms frames; return (time s, wake word, score) per detection."""
    hits = []
    for i in range(0, len(audio) - FRAME + 1, FRAME):
        detection = detector.process(audio[i : i + FRAME].tobytes())
        if detection is not None:
            hits.append(((i + FRAME) / 16000, detection.wake_word, detection.score))
    return hits


@pytest.mark.parametrize("engine", ENGINES)
def test_detects_hey_jarvis(engine, speech):
    detector = create_detector(engine, ["hey_jarvis"])
    audio = speech.clip(1.0, "Hey Jarvis.", 1.0)
    hits = run(detector, audio)
    assert len(hits) == 1, hits
    when, word, score = hits[0]
    assert word == "hey_jarvis"
    assert score >= detector.thresholds["hey_jarvis"]
    spoken_end = 1.0 + len(speech.say("Hey Jarvis.")) / 16000
    assert 1.0 < when < spoken_end + 0.8, "fires near the end of the phrase"


@pytest.mark.parametrize("engine", ENGINES)
def test_detects_after_a_command_in_a_longer_stream(engine, speech):
    detector = create_detector(engine, ["hey_jarvis", "okay_nabu"])
    audio = speech.clip(0.5, "Turn on the kitchen light.", 0.7, "Hey Jarvis.", 0.6, "Turn on the kitchen light.", 0.5)
    assert [word for _, word, _ in run(detector, audio)] == ["hey_jarvis"]


@pytest.mark.parametrize("engine", ENGINES)
def test_no_trigger_on_silence_noise_or_other_speech(engine, speech):
    detector = create_detector(engine, ["hey_jarvis", "alexa", "okay_nabu", "hey_mycroft"])
    rng = np.random.default_rng(1)
    noise = (rng.standard_normal(16000 * 2) * 3000).astype(np.int16)
    audio = np.concatenate(
        [
            speech.silence(3.0),
            noise,
            speech.clip("Turn on the kitchen light.", 0.3, "What is the weather like today?", 0.3),
            speech.clip("Set a timer for ten minutes.", 0.3, "Harvest the garden.", 1.0),
        ]
    )
    assert run(detector, audio) == []


@pytest.mark.parametrize("engine", ENGINES)
def test_refractory_period_suppresses_a_repeat(engine, speech):
    audio = speech.clip(1.0, "Hey Jarvis.", 1.5, "Hey Jarvis.", 1.0)
    assert len(run(create_detector(engine, ["hey_jarvis"], refractory_s=0.8), audio)) == 2
    assert len(run(create_detector(engine, ["hey_jarvis"], refractory_s=10.0), audio)) == 1


@pytest.mark.parametrize("engine", ENGINES)
def test_trigger_level_and_threshold(engine, speech):
    audio = speech.clip(1.0, "Hey Jarvis.", 1.0)
    assert run(create_detector(engine, ["hey_jarvis"], trigger_level=40), audio) == []
    assert run(create_detector(engine, [{"model": "hey_jarvis", "threshold": 1.0}]), audio) == []
    assert len(run(create_detector(engine, ["hey_jarvis"], trigger_level=2), audio)) == 1


def test_openwakeword_defaults_and_names():
    detector = create_detector("openwakeword", list(BUILTIN_OPENWAKEWORD), threshold=0.6)
    assert isinstance(detector, OpenWakeWordDetector)
    assert detector.wake_words == BUILTIN_OPENWAKEWORD
    assert set(detector.thresholds.values()) == {0.6}
    assert create_detector("openwakeword", ["alexa"]).thresholds == {"alexa": 0.5}


def test_micro_uses_the_model_cutoff_by_default():
    detector = create_detector("micro", list(BUILTIN_MICRO))
    assert isinstance(detector, MicroWakeWordDetector)
    assert detector.thresholds["hey_jarvis"] == pytest.approx(0.97)
    assert detector.thresholds["okay_nabu"] == pytest.approx(0.85)


def test_unknown_models_fail_clearly(tmp_path):
    with pytest.raises(WakeWordError, match="unknown openwakeword model"):
        create_detector("openwakeword", ["hey_toaster"])
    with pytest.raises(WakeWordError, match="unknown micro model"):
        create_detector("micro", ["hey_rhasspy"])
    with pytest.raises(WakeWordError, match="not found"):
        create_detector("openwakeword", [str(tmp_path / "missing.tflite")])
    with pytest.raises(WakeWordError, match="manifest not found"):
        create_detector("micro", [str(tmp_path / "missing.tflite")])
    with pytest.raises(WakeWordError, match="unknown wake word engine"):
        create_detector("snowboy", ["hey_jarvis"])


def test_custom_tflite_by_path_openwakeword(tmp_path, speech):
    custom = tmp_path / "my_butler.tflite"
    shutil.copy(pyopen_models_dir() / "hey_jarvis.tflite", custom)
    detector = create_detector("openwakeword", [str(custom)])
    assert detector.wake_words == ("my_butler",)
    assert [w for _, w, _ in run(detector, speech.clip(1.0, "Hey Jarvis.", 1.0))] == ["my_butler"]


def test_custom_model_by_path_micro(tmp_path, speech):
    import json

    import pymicro_wakeword

    builtin = pymicro_wakeword.__file__.rsplit("/", 1)[0] + "/models"
    shutil.copy(f"{builtin}/hey_jarvis.tflite", tmp_path / "my_butler.tflite")
    manifest = json.loads(open(f"{builtin}/hey_jarvis.json").read())
    manifest["model"] = "my_butler.tflite"
    (tmp_path / "my_butler.json").write_text(json.dumps(manifest))
    detector = create_detector("micro", [str(tmp_path / "my_butler.tflite")])
    assert detector.wake_words == ("my_butler",)
    assert [w for _, w, _ in run(detector, speech.clip(1.0, "Hey Jarvis.", 1.0))] == ["my_butler"]


@pytest.mark.parametrize("engine", ENGINES)
def test_no_cpu_stall_after_a_detection(engine, speech):
    """Resetting after a detection must not stall the audio loop (openwakeword's own reset takes ~130 ms)."""
    import time

    detector = create_detector(engine, ["hey_jarvis"])
    audio = speech.clip(1.0, "Hey Jarvis.", 1.0)
    worst_after = 0.0
    detected = False
    for i in range(0, len(audio) - FRAME + 1, FRAME):
        start = time.thread_time()
        hit = detector.process(audio[i : i + FRAME].tobytes())
        if detected:
            worst_after = max(worst_after, time.thread_time() - start)
        detected = detected or hit is not None
    assert detected and worst_after < 0.05
