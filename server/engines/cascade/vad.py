"""Server-side voice activity detection with Silero v6 on plain onnxruntime.

faster-whisper ships `silero_vad_v6.onnx`, so the server needs neither torch nor
another VAD package. That model scores one 512-sample frame (32 ms at 16 kHz)
per call, but it expects the frame prefixed with the last 64 samples of the
previous frame ("context") and returns its LSTM state (h, c) to be fed back.
Both are per-stream state, kept in `SileroVad`; the onnxruntime session itself
is stateless and shared by every stream.
"""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

import numpy as np
import onnxruntime

FRAME_SAMPLES = 512
CONTEXT_SAMPLES = 64
_STATE_SHAPE = (1, 1, 128)


def default_model_path() -> Path:
    """The Silero v6 model bundled with faster-whisper."""
    return Path(str(resources.files("faster_whisper.assets").joinpath("silero_vad_v6.onnx")))


@functools.lru_cache(maxsize=None)
def _shared_session(path: str) -> onnxruntime.InferenceSession:
    """One inference session per model file for the whole process.

    `InferenceSession.run` is thread-safe and the model keeps no state between
    runs, so every conversation can share it. One thread each: a 32 ms frame is
    far too small to gain from parallelism, and the server has other work.
    """
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(
        path, sess_options=options, providers=["CPUExecutionProvider"]
    )


class SileroVad:
    """A `VoiceActivityModel` for one audio stream (create one per session)."""

    frame_samples: int = FRAME_SAMPLES

    def __init__(self, model_path: str | Path | None = None) -> None:
        path = Path(model_path) if model_path is not None else default_model_path()
        self._session = _shared_session(str(path.resolve()))
        # One reusable input row: [64 samples of context | 512 samples of frame].
        self._input = np.zeros((1, CONTEXT_SAMPLES + FRAME_SAMPLES), dtype=np.float32)
        self._h = np.zeros(_STATE_SHAPE, dtype=np.float32)
        self._c = np.zeros(_STATE_SHAPE, dtype=np.float32)

    def probability(self, frame: np.ndarray) -> float:
        """Speech probability in [0, 1] of one float32 frame of 512 samples."""
        if frame.shape != (FRAME_SAMPLES,):
            raise ValueError(
                f"Silero VAD takes frames of exactly {FRAME_SAMPLES} samples, got shape {frame.shape}"
            )
        row = self._input[0]
        # The tail of the previous frame becomes this frame's context.
        row[:CONTEXT_SAMPLES] = row[-CONTEXT_SAMPLES:]
        row[CONTEXT_SAMPLES:] = frame
        prob, self._h, self._c = self._session.run(
            None, {"input": self._input, "h": self._h, "c": self._c}
        )
        return float(prob.reshape(-1)[0])

    def reset(self) -> None:
        """Forget the recurrent state and context (a new stream starts)."""
        self._input.fill(0.0)
        self._h = np.zeros(_STATE_SHAPE, dtype=np.float32)
        self._c = np.zeros(_STATE_SHAPE, dtype=np.float32)
