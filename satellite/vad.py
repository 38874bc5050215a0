"""Edge voice activity detection: stop streaming when the user stops talking.

The server still decides the turn (its own VAD may end it first); the edge
VAD only keeps a satellite from streaming silence for seconds.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

from hearth.wire import AudioStopReason

_BYTES_PER_10MS = 320


class VoiceActivityDetector(abc.ABC):
    """``is_speech`` takes 16 kHz mono PCM16, a multiple of 10 ms."""

    engine: str

    @abc.abstractmethod
    def is_speech(self, pcm: bytes) -> bool: ...

    def reset(self) -> None:  # noqa: B027 - optional
        pass


class WebRtcVad(VoiceActivityDetector):
    """webrtcvad-wheels: GMM-based, microseconds per frame; mode 3 rejects noise best."""

    engine = "webrtcvad"

    def __init__(self, aggressiveness: int = 3) -> None:
        import webrtcvad

        self._vad = webrtcvad.Vad(aggressiveness)

    def is_speech(self, pcm: bytes) -> bool:
        n = len(pcm)
        if n in (320, 640, 960):  # 10, 20 or 30 ms
            return self._vad.is_speech(pcm, 16000)
        step = 960 if n % 960 == 0 else (640 if n % 640 == 0 else 320)
        votes = [self._vad.is_speech(pcm[i : i + step], 16000) for i in range(0, n - step + 1, step)]
        return sum(votes) * 2 >= len(votes) if votes else False


class MicroVad(VoiceActivityDetector):
    """pymicro-vad: a small neural VAD, 10 ms windows, probability threshold."""

    engine = "micro"

    def __init__(self, threshold: float = 0.5) -> None:
        from pymicro_vad import MicroVad as _MicroVad

        self._vad = _MicroVad()
        self.threshold = threshold

    def is_speech(self, pcm: bytes) -> bool:
        probability = 0.0
        for i in range(0, len(pcm) - _BYTES_PER_10MS + 1, _BYTES_PER_10MS):
            probability = max(probability, self._vad.process_10ms(pcm[i : i + _BYTES_PER_10MS]))
        return probability >= self.threshold

    def reset(self) -> None:
        self._vad.reset()


def create_vad(engine: str, *, aggressiveness: int = 3, threshold: float = 0.5) -> VoiceActivityDetector:
    if engine == "webrtcvad":
        return WebRtcVad(aggressiveness)
    if engine == "micro":
        return MicroVad(threshold)
    raise ValueError(f"unknown VAD engine {engine!r}")


@dataclass
class Endpointer:
    """Decides when an utterance is over, frame by frame (audio time, not wall clock).

    ``process`` returns ``None`` while the utterance goes on, else the
    :class:`~hearth.wire.AudioStopReason` that ends it.
    """

    frame_ms: int
    min_speech_ms: int = 120
    silence_ms: int = 800
    no_speech_timeout_ms: int = 5000
    max_ms: int = 15000

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.elapsed_ms = 0
        self.speech_run_ms = 0
        self.silence_run_ms = 0
        self.in_speech = False

    def process(self, is_speech: bool) -> str | None:
        self.elapsed_ms += self.frame_ms
        if not self.in_speech:
            self.speech_run_ms = self.speech_run_ms + self.frame_ms if is_speech else 0
            if self.speech_run_ms >= self.min_speech_ms:
                self.in_speech = True
        elif is_speech:
            self.silence_run_ms = 0
        else:
            self.silence_run_ms += self.frame_ms
            if self.silence_run_ms >= self.silence_ms:
                return AudioStopReason.END_OF_SPEECH
        if self.elapsed_ms >= self.max_ms:
            return AudioStopReason.MAX_LENGTH
        if not self.in_speech and self.elapsed_ms >= self.no_speech_timeout_ms:
            return AudioStopReason.NO_SPEECH
        return None
