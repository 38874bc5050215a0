"""What the listener heard: playback reports from transports with a media track.

A transport that plays the reply itself (a satellite's speaker, a WebRTC track) reports
how far playback got. The session then cuts the unheard part of the assistant's item
(so the conversation holds what was said, not what was generated), sends
`output_audio_buffer.started/stopped` where the transport wants them, and arms the
idle timer from the moment playback really ended.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ..protocol import server_events as ev
from .interfaces import Playback
from .items import Items
from .responses import ActiveResponse, Responses

_LOGGER = logging.getLogger(__name__)


class PlaybackTracker:
    def __init__(self, responses: Responses, items: Items, emit: Callable[[ev.ServerEvent], None], *,
                 buffer_events: bool, on_finished: Callable[[], None]) -> None:
        self.responses = responses
        self.items = items
        self._emit = emit
        self.buffer_events = buffer_events
        self._on_finished = on_finished
        self._started: set[str] = set()
        self._finished: set[str] = set()
        #: Responses whose `output_audio_buffer.cleared` went out; the transport's last report
        #: (where playback stopped) still truncates them, and no `stopped` follows.
        self._cleared: set[str] = set()

    def report(self, playback: Playback) -> None:
        active = self.responses.find(playback.response_id)
        if active is None:
            _LOGGER.debug("playback of unknown response %s ignored", playback.response_id)
            return
        rid = playback.response_id
        if rid in self._finished:
            return
        cleared = rid in self._cleared
        if rid not in self._started and not cleared:
            self._started.add(rid)
            if self.buffer_events:
                self._emit(ev.OutputAudioBufferStarted(response_id=rid))
        if not playback.finished:
            return
        self._trim_memory()
        self._finished.add(rid)
        self._cleared.discard(rid)
        interrupted = cleared
        if not active.builder.done:  # the listener stopped before the reply ended: stop making it
            self.responses.cancel(active, "client_cancelled")
            interrupted = True
        self._truncate(active, playback)
        if self.buffer_events and not interrupted:
            self._emit(ev.OutputAudioBufferStopped(response_id=rid))
        if self.responses.active is None:
            self._on_finished()

    def started(self, response_id: str) -> bool:
        return response_id in self._started

    def playing(self, response_id: str) -> bool:
        """Playback of this response started and has not ended or been cleared."""
        return response_id in self._started and response_id not in self._finished and \
            response_id not in self._cleared

    def cleared(self, response_id: str) -> None:
        """`output_audio_buffer.cleared` (a client clear, a barge-in): nothing more of it will be heard.

        The transport still reports where playback stopped, and that report truncates.
        """
        self._cleared.add(response_id)

    def _truncate(self, active: ActiveResponse, playback: Playback) -> None:
        entry = active.builder.spoken
        if entry is None or (playback.item_id is not None and entry.id != playback.item_id):
            return
        if entry.id not in self.items.conversation or entry.audio is None:
            return
        played = max(0, int(playback.played_ms))
        if played >= int(entry.audio_ms):
            return  # all of it was heard
        self.items.cut(entry, played)

    def _trim_memory(self) -> None:
        for seen in (self._started, self._finished, self._cleared):
            if len(seen) > 256:
                seen.clear()
