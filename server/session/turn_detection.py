"""Server VAD as a pure state machine over 16 kHz audio.

It turns per-frame speech probabilities into the moments the session acts
on: speech started (for `speech_started` and barge-in), silence began (to start
transcribing speculatively), speech resumed (the speculation is stale), and
turn ended (silence lasted long enough). Positions are sample offsets at
16 kHz from the start of the session's input audio.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from .interfaces import PIPELINE_RATE, VoiceActivityModel

#: Speech must persist this long before it counts (filters clicks and taps).
MIN_SPEECH_MS = 64
#: Silence is declared below threshold minus this margin (Silero's hysteresis).
NEGATIVE_MARGIN = 0.15
#: Silence this long is "settled": Silero dips for one or two frames inside words, and
#: work started on such a dip (a speculative transcription) would be wasted.
SETTLE_MS = 64


@dataclass(frozen=True)
class VadSettings:
    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500


@dataclass(frozen=True)
class TurnSignal:
    kind: Literal["speech_started", "silence_began", "silence_settled", "speech_resumed", "turn_ended"]
    #: speech_started: start of speech including prefix padding; turn_ended: the
    #: end of the committed audio (speech end plus the silence waited);
    #: silence_began / silence_settled / speech_resumed: where the silence began.
    sample: int
    #: speech_started: where the voiced audio actually began (before padding);
    #: turn_ended: the last voiced sample.
    speech_sample: int = 0


class TurnDetector:
    def __init__(self, model: VoiceActivityModel, settings: VadSettings) -> None:
        self.model = model
        self.settings = settings
        self.frame = model.frame_samples
        self._pending = np.zeros(0, dtype=np.float32)
        #: Samples consumed so far (multiple of the frame size) since the session began.
        self.position = 0
        self.in_speech = False
        self._speech_run = 0
        self._speech_start = 0
        self._silence_start: int | None = None
        self._settled = False
        self.last_speech_end = 0
        self.last_probability = 0.0

    def configure(self, settings: VadSettings) -> None:
        self.settings = settings

    def skip(self, samples: int) -> None:
        """Account for audio that was not scored (VAD off), keeping positions aligned."""
        self.position += samples

    def reset_turn(self) -> None:
        """Forget an ongoing utterance (buffer cleared, or VAD switched)."""
        self.in_speech = False
        self._speech_run = 0
        self._silence_start = None

    def feed(self, audio: np.ndarray) -> list[TurnSignal]:
        """Score float32 16 kHz audio; returns what happened, in order."""
        return self.apply(self.score(audio))

    def score(self, audio: np.ndarray) -> list[float]:
        """Speech probabilities of the whole frames in `audio` (the rest waits for more).

        The only part that runs the model: for a large append it can run in a worker
        thread while `apply` stays on the event loop.
        """
        if len(self._pending):
            audio = np.concatenate([self._pending, audio])
        usable = len(audio) - len(audio) % self.frame
        self._pending = audio[usable:].copy()
        return [self.model.probability(audio[offset : offset + self.frame]) for offset in range(0, usable, self.frame)]

    def apply(self, probabilities: list[float]) -> list[TurnSignal]:
        """Advance the state machine by one scored frame each; returns what happened, in order."""
        signals: list[TurnSignal] = []
        for probability in probabilities:
            self.last_probability = probability
            self.position += self.frame
            signals.extend(self._step(probability))
        return signals

    def _step(self, probability: float) -> list[TurnSignal]:
        settings = self.settings
        frame_end = self.position
        frame_start = frame_end - self.frame
        min_frames = max(1, round(MIN_SPEECH_MS * PIPELINE_RATE / 1000 / self.frame))
        if not self.in_speech:
            if probability >= settings.threshold:
                if self._speech_run == 0:
                    self._speech_start = frame_start
                self._speech_run += 1
                if self._speech_run >= min_frames:
                    self.in_speech = True
                    self._silence_start = None
                    padding = settings.prefix_padding_ms * PIPELINE_RATE // 1000
                    start = max(0, self._speech_start - padding)
                    return [TurnSignal("speech_started", start, self._speech_start)]
            else:
                self._speech_run = 0
            return []
        if probability >= settings.threshold - NEGATIVE_MARGIN:
            if self._silence_start is not None and probability >= settings.threshold:
                resumed = self._silence_start
                self._silence_start = None
                return [TurnSignal("speech_resumed", resumed)]
            if self._silence_start is None:
                self.last_speech_end = frame_end
            return []
        if self._silence_start is None:
            self._silence_start = frame_start
            self._settled = False
            self.last_speech_end = frame_start
            return [TurnSignal("silence_began", frame_start)]
        signals: list[TurnSignal] = []
        silence = (frame_end - self._silence_start) * 1000 / PIPELINE_RATE
        if not self._settled and silence >= SETTLE_MS:
            self._settled = True
            signals.append(TurnSignal("silence_settled", self._silence_start))
        if silence >= settings.silence_duration_ms:
            self.in_speech = False
            self._speech_run = 0
            end = self._silence_start
            self._silence_start = None
            signals.append(TurnSignal("turn_ended", frame_end, end))
        return signals
