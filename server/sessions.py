"""The session registry: the one place sessions are made, tracked and closed.

The composition root owns it; transports (the WebSocket handler, the MQTT bridge, WebRTC)
ask it for a session with their sink and get one wired to the engine, the tool layer
and the configured defaults, already started. Shutdown closes what is left.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from .session.interfaces import EventSink, MediaSink, SpeechEngine, Toolbox
from .session.limits import SessionLimits
from .session.session import RealtimeSession, SessionOptions
from .session.timings import TimingObserver
from .tools.registry import ToolRegistry, ToolScope

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class SessionPolicy:
    """What every session gets from the server's configuration."""

    #: Session defaults in Realtime wire form.
    defaults: dict[str, Any]
    max_duration_s: float = 3600.0
    tool_timeout_s: float = 2.5
    #: Offer server-side tools (Home Assistant's) to Realtime clients too, not only to satellites.
    tools_for_clients: bool = False
    limits: SessionLimits = field(default_factory=SessionLimits)


class SessionRegistry:
    def __init__(self, engine: SpeechEngine, tools: ToolRegistry, policy: SessionPolicy) -> None:
        self.engine = engine
        self.tools = tools
        self.policy = policy
        self._live: dict[str, RealtimeSession] = {}
        self._observers: list[TimingObserver] = []

    def __len__(self) -> int:
        return len(self._live)

    def __iter__(self) -> Iterator[RealtimeSession]:
        return iter(list(self._live.values()))

    def open(
        self,
        sink: EventSink,
        *,
        kind: Literal["realtime", "transcription"] = "realtime",
        model: str = "hearth",
        defaults: dict[str, Any] | None = None,
        media: MediaSink | None = None,
        media_rate: int | None = None,
        playback_events: bool = False,
        satellite_id: str | None = None,
        tool_scope: ToolScope | None = None,
    ) -> RealtimeSession:
        """A started session for one transport connection; `close()` it through `closed`.

        `tool_scope` overrides whose server-side tools it gets (by default: the satellite's,
        or the Realtime clients' when configured).
        """
        options = SessionOptions(
            kind=kind, model=model, defaults=self.policy.defaults if defaults is None else defaults,
            max_duration_s=self.policy.max_duration_s, media_rate=media_rate, playback_events=playback_events,
            tool_timeout_s=self.policy.tool_timeout_s, satellite_id=satellite_id, limits=self.policy.limits)
        toolbox = self.tools.for_session(tool_scope) if tool_scope is not None else self._toolbox(satellite_id)
        session = RealtimeSession(self.engine, sink, options, media=media, toolbox=toolbox)
        for observer in self._observers:
            session.timings.subscribe(observer)
        self._live[session.id] = session
        session.start()
        return session

    def _toolbox(self, satellite_id: str | None) -> Toolbox | None:
        if satellite_id is not None:
            return self.tools.for_session(ToolScope("satellite", satellite_id))
        if self.policy.tools_for_clients:
            return self.tools.for_session(ToolScope("realtime"))
        return None

    def closed(self, session: RealtimeSession) -> None:
        """The transport is done with `session`: stop its work and forget it."""
        session.close()
        self._live.pop(session.id, None)

    def subscribe(self, observer: TimingObserver) -> Callable[[], None]:
        """Tell `observer` of every finished turn of every session, present and future."""
        self._observers.append(observer)
        unsubscribers = [session.timings.subscribe(observer) for session in self]

        def unsubscribe() -> None:
            if observer in self._observers:
                self._observers.remove(observer)
            for undo in unsubscribers:
                undo()

        return unsubscribe

    async def close_all(self, timeout: float = 2.0) -> None:
        """Server shutdown: close every session left and let its work unwind (bounded)."""
        sessions = list(self)
        for session in sessions:
            self.closed(session)
        if sessions:
            await asyncio.wait([asyncio.ensure_future(s.wait_closed(timeout)) for s in sessions], timeout=timeout)
