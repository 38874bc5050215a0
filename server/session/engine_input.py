"""Engine-driven input: the engine hears the audio itself and reports its turns (`Listener`).

With the relay, the upstream Realtime server's own turn detection and transcription are
used as they are: the session streams the input audio to the engine's listener, keeps its
buffer as always, and turns the engine's `InputEvents` into the events its own turn
detection would send. Clients cannot tell the difference, except that the turns are the
upstream's. The session's own commits (manual, idle timeout, end of input) and clears go to
the listener too, so both buffers stay one.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from ..protocol import server_events as ev
from ..protocol.ids import new_id
from .interfaces import PIPELINE_RATE, Listener
from .items import set_transcript

if TYPE_CHECKING:
    from .input import InputStage

_LOGGER = logging.getLogger(__name__)

#: Audio kept before speech while no turn is in progress: the engine reports speech later
#: than it began (its padding and its network), and the turn's audio must still be here.
KEEP_BEFORE_SPEECH_MS = 3000


class EngineInput:
    """The session's `InputEvents`: an engine's turns as the session's own."""

    def __init__(self, stage: InputStage, listener: Listener) -> None:
        self.stage = stage
        self.listener = listener
        self._speech_start = 0
        self._speech_end: int | None = None
        self.configure()

    def configure(self) -> None:
        """Tell the listener the session's turn detection and transcription (at start and on each update)."""
        cfg = self.stage.hooks.config().audio.input
        turn = cfg.turn_detection.model_dump(exclude_none=True) if cfg.turn_detection is not None else None
        transcription = cfg.transcription.model_dump(exclude_none=True) if cfg.transcription is not None else None
        self.listener.listen(self, turn, transcription)

    # ------------------------------------------------------------ the session's side

    def append(self, wire: np.ndarray, rate: int) -> None:
        self.listener.append(wire, rate)
        stage = self.stage
        if stage.speech_item is None and stage.hooks.config().audio.input.turn_detection is not None:
            keep = KEEP_BEFORE_SPEECH_MS * PIPELINE_RATE // 1000
            if stage.buffer.end - stage.buffer.start > 2 * keep:
                stage.buffer.drop_until(stage.buffer.end - keep)

    def clear(self) -> None:
        self._speech_end = None
        self.listener.clear()

    # ------------------------------------------------------------ InputEvents

    def speech_started(self, audio_start_ms: int) -> str | None:
        stage = self.stage
        if stage.hooks.config().audio.input.turn_detection is None:
            return None
        if stage.speech_item is None:
            stage.speech_item = new_id("item")
        self._speech_end = None
        self._speech_start = max(_position(audio_start_ms), stage.buffer.start)
        stage.hooks.emit(ev.SpeechStarted(item_id=stage.speech_item, audio_start_ms=audio_start_ms))
        stage.hooks.speech_started()
        return stage.speech_item

    def speech_stopped(self, audio_end_ms: int) -> None:
        stage = self.stage
        if stage.speech_item is None:
            return
        self._speech_end = min(_position(audio_end_ms), stage.buffer.end)
        stage.hooks.emit(ev.SpeechStopped(item_id=stage.speech_item, audio_end_ms=audio_end_ms))

    def committed(self) -> str | None:
        stage = self.stage
        item_id, vad = stage.speech_item, stage.hooks.config().audio.input.turn_detection
        if item_id is None or vad is None:
            _LOGGER.debug("engine committed a turn this session already committed or cleared")
            return None
        end = self._speech_end if self._speech_end is not None else stage.buffer.end
        stage.speech_item, self._speech_end = None, None
        stage.commit_heard(item_id, self._speech_start, end)
        stage.hooks.turn_committed(item_id, vad)
        return item_id

    def transcribed(self, item_id: str, text: str) -> None:
        stage = self.stage
        entry = stage.conversation.get(item_id)
        if entry is not None:
            set_transcript(entry, text)
        if stage.hooks.config().audio.input.transcription is None:
            return
        if text:
            stage.hooks.emit(ev.TranscriptionDelta(item_id=item_id, content_index=0, delta=text))
        stage.hooks.emit(ev.TranscriptionCompleted(item_id=item_id, content_index=0, transcript=text,
                                                   usage=_usage(entry)))

    def transcription_failed(self, item_id: str, message: str) -> None:
        if self.stage.hooks.config().audio.input.transcription is not None:
            self.stage.hooks.emit(ev.TranscriptionFailed(item_id=item_id, content_index=0, error={
                "type": "transcription_error", "code": "transcription_failed", "message": message, "param": None}))

    def failed(self, code: str, message: str) -> None:
        stage = self.stage
        if stage.speech_item is not None:
            _LOGGER.info("turn %s dropped: %s", stage.speech_item, message)
        stage.speech_item, self._speech_end = None, None
        stage.hooks.emit(ev.Error(error=ev.ErrorDetail(type="server_error", code=code, message=message, param=None,
                                                       event_id=None)))


def _position(ms: int) -> int:
    return int(ms) * PIPELINE_RATE // 1000


def _usage(entry: Any) -> dict[str, Any]:
    seconds = entry.audio_ms / 1000 if entry is not None and entry.audio is not None else 0.0
    return {"type": "duration", "seconds": round(seconds, 3)}
