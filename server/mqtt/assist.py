"""Home Assistant's requests to the server: announcements, start_conversation, the conversation agent, timers.

The Home Assistant tool provider (:mod:`..tools.home_assistant`) decodes what the
integration sends on ``hearth/v1/ha/event`` and hands everything that is not a
tool result to :meth:`HomeAssistantAssist.handle`. This module turns those requests
into sessions and answers them on ``hearth/v1/ha/command``:

* ``announce`` — a server-started satellite session whose one response says the
  text (a chime first unless ``preannounce`` is false); ``request-done`` once the
  satellite has played it, or with an error when it could not.
* ``start-conversation`` — the same, then the satellite's mic reopens without a wake
  word (the reply expects an answer, as in continued conversation) and the answer is
  a normal turn of that session; ``request-done`` once the prompt has been played.
* ``conversation-request`` — the Hearth conversation agent: a text-only session with
  that satellite's catalog (or the device-less one) answers the text; its tool calls
  run through the provider like a satellite's. Sessions are kept per conversation id,
  so a follow-up keeps its context.
* ``timer-finished`` — the timer rings on its satellite: a sound and "Your 5 minute
  timer is done.", again every :data:`TIMER_RING_PAUSE_S` after each ring until somebody
  turns to the satellite (its wake word, a barge-in into the ring, or a stopped reply:
  :meth:`MqttBridge.attended_since`), at most :data:`TIMER_RINGS` times. Home Assistant's
  own satellites (Voice PE) likewise ring until the wake word, "stop" or a button.

Transports stay free of this: the bridge only offers `MqttBridge.start_session`, and
the sessions come from the server's session registry. Everything runs on the event loop.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from aiohttp import web

from hearth.wire import (
    Announce,
    ConversationRequest,
    ConversationResponse,
    RequestDone,
    StartConversation,
    TimerCancelled,
    TimerFinished,
    TimerStarted,
    TimerUpdated,
    ToolErrorCode,
    ha_topics,
)
from hearth.wire.audio import SAMPLE_RATE as WIRE_RATE
from hearth.wire.message import Message
from hearth.wire.topics import QOS_CONTROL

from ..protocol import client_events as ce
from ..protocol import server_events as ev
from ..session.session import RealtimeSession
from ..sessions import SessionRegistry
from ..tools.registry import ToolScope
from .bridge import MqttBridge, SatelliteUnavailable

_LOGGER = logging.getLogger(__name__)

Publish = Callable[[str, bytes, int, bool], bool]

#: Longest wait for a satellite to play an announcement (beyond the time its words take).
PLAY_TIMEOUT_S = 30.0
#: Longest wait for the conversation agent's answer (tool rounds included).
ANSWER_TIMEOUT_S = 30.0
#: Conversation-agent sessions kept for follow-ups (the oldest is closed beyond this).
MAX_CONVERSATIONS = 8
#: A timer that finds its satellite busy tries again this often, for this long.
TIMER_RETRY_S = 2.0
TIMER_RETRY_FOR_S = 60.0
#: A finished timer rings at most this often (about a minute and a half of ringing)...
TIMER_RINGS = 10
#: ...with this pause after each ring has been played.
TIMER_RING_PAUSE_S = 5.0


def chime(notes: tuple[float, ...] = (880.0, 1318.5), note_ms: int = 160) -> np.ndarray:
    """A short rising two-note chime, 16 kHz PCM16 (whole 40 ms reply frames)."""
    n = WIRE_RATE * note_ms // 1000
    t = np.arange(n) / WIRE_RATE
    envelope = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.01) * np.exp(-3.0 * t)
    tones = [0.25 * np.sin(2 * np.pi * f * t) * envelope for f in notes]
    return (np.concatenate(tones) * 32767).astype(np.int16)


#: Before an announcement (``preannounce``).
ANNOUNCE_CHIME = chime()
#: Before a finished timer's line: three quick high notes.
TIMER_CHIME = chime((1568.0, 1568.0, 1568.0), note_ms=120)


def duration_words(seconds: int) -> str:
    """``300`` → ``"5 minute"``, ``5400`` → ``"1 hour 30 minute"`` (as in "your 5 minute timer")."""
    hours, rest = divmod(max(0, int(seconds)), 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{value} {unit}" for value, unit in ((hours, "hour"), (minutes, "minute"), (secs, "second")) if value]
    return " ".join(parts) or "0 second"


def timer_line(timer: TimerFinished, started: TimerStarted | None = None) -> str:
    """What a finished timer says: its name when it has one, else its length."""
    name = timer.name or (started.name if started else None)
    if name:
        name = name.strip()
        return f"Your {name} timer is done." if not name.lower().endswith("timer") else f"Your {name} is done."
    total = timer.total_seconds if timer.total_seconds is not None else (started.total_seconds if started else None)
    if total:
        return f"Your {duration_words(total)} timer is done."
    return "Your timer is done."


@dataclass
class _Chat:
    """One conversation-agent session and what it said."""

    session: RealtimeSession
    sink: _TextSink
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class _TextSink:
    """The event sink of a text-only session: resolves a future with each final response."""

    def __init__(self) -> None:
        self.answer: asyncio.Future[tuple[str, str | None]] | None = None

    def send(self, event: ev.ServerEvent) -> None:
        if isinstance(event, ev.ResponseDone):
            response = event.response
            output = response.get("output") or []
            if any(item.get("type") == "function_call" for item in output) and response.get("status") == "completed":
                return  # a server-side tool runs; the follow-up response answers
            text = " ".join(
                part.get("text") or part.get("transcript") or ""
                for item in output if item.get("type") == "message"
                for part in item.get("content") or []).strip()
            error = None
            if response.get("status") == "failed":
                error = ((response.get("status_details") or {}).get("error") or {}).get("message") or "failed"
            if self.answer is not None and not self.answer.done():
                self.answer.set_result((text, error))
        elif isinstance(event, ev.Error):
            if self.answer is not None and not self.answer.done():
                self.answer.set_result(("", event.error.message))

    def close(self, code: int, reason: str) -> None:
        if self.answer is not None and not self.answer.done():
            self.answer.set_result(("", f"session closed ({reason})"))


class HomeAssistantAssist:
    """Answers Home Assistant's announce, start_conversation, conversation and timer messages."""

    KEY: ClassVar[web.AppKey[HomeAssistantAssist]]

    def __init__(self, bridge: MqttBridge, sessions: SessionRegistry, publish: Publish) -> None:
        self.bridge = bridge
        self.sessions = sessions
        self._publish = publish
        self._tasks: set[asyncio.Task[Any]] = set()
        self._chats: OrderedDict[str, _Chat] = OrderedDict()
        #: Timers started on satellites, by timer id (for a finished timer's name and length).
        self.timers: dict[str, TimerStarted] = {}
        self.closed = False

    # ---------------------------------------------------------------- intake
    def handle(self, event: object) -> None:
        """One decoded message from Home Assistant's event topic (the provider's `on_event`). Never raises."""
        if self.closed:
            return
        match event:
            case Announce():
                self._spawn(self._speak(event.request_id, event.satellite_id, event.text, listen=False,
                                        preannounce=event.preannounce), "announce")
            case StartConversation():
                self._spawn(self._speak(event.request_id, event.satellite_id, event.text, listen=True,
                                        preannounce=event.preannounce, instructions=event.extra_system_prompt),
                            "start-conversation")
            case ConversationRequest():
                self._spawn(self._converse(event), "conversation")
            case TimerStarted():
                self.timers[event.timer_id] = event
                _LOGGER.info("%s: timer %s started (%d s)", event.satellite_id, event.timer_id, event.total_seconds)
            case TimerUpdated():
                started = self.timers.get(event.timer_id)
                if started is not None and event.total_seconds is not None:
                    self.timers[event.timer_id] = TimerStarted(
                        started.satellite_id, started.timer_id, event.total_seconds, event.name or started.name)
            case TimerCancelled():
                self.timers.pop(event.timer_id, None)
                _LOGGER.info("%s: timer %s cancelled", event.satellite_id, event.timer_id)
            case TimerFinished():
                self._spawn(self._ring(event, self.timers.pop(event.timer_id, None)), "timer")
            case _:
                _LOGGER.debug("ignoring %r from Home Assistant", event)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=f"ha-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _LOGGER.error("Home Assistant request failed", exc_info=task.exception())

    def _send(self, message: Message) -> None:
        self._publish(ha_topics.ha_command(), message.to_json(), QOS_CONTROL, False)

    # ---------------------------------------------------------------- announce / start_conversation
    async def _speak(self, request_id: str, satellite_id: str, text: str | None, *, listen: bool,
                     preannounce: bool, instructions: str | None = None) -> None:
        try:
            played = self.bridge.start_session(satellite_id, text=text, listen=listen,
                                               prelude=ANNOUNCE_CHIME if preannounce and text else None,
                                               instructions=instructions)
        except SatelliteUnavailable as err:
            _LOGGER.info("Home Assistant's request %s: %s", request_id, err)
            self._send(RequestDone(request_id, error=ToolErrorCode.UNAVAILABLE, message=f"{err}."))
            return
        try:
            async with asyncio.timeout(PLAY_TIMEOUT_S + 0.1 * len(text or "")):
                error = await played
        except TimeoutError:
            error = "the satellite did not finish playing in time"
        if error is None:
            self._send(RequestDone(request_id))
        else:
            self._send(RequestDone(request_id, error=ToolErrorCode.FAILED,
                                   message=f"The satellite {satellite_id} could not play it ({error})."))

    # ---------------------------------------------------------------- timers
    async def _ring(self, timer: TimerFinished, started: TimerStarted | None) -> None:
        """Ring until somebody turns to the satellite, or :data:`TIMER_RINGS` times."""
        line = timer_line(timer, started)
        loop = asyncio.get_running_loop()
        since = loop.time()
        for ring in range(1, TIMER_RINGS + 1):
            if ring > 1:
                await asyncio.sleep(TIMER_RING_PAUSE_S)
                if self.bridge.attended_since(timer.satellite_id, since):
                    break
            played = await self._ring_once(timer, line, wait_if_busy=ring == 1)
            if played is None:
                return
            _LOGGER.info("%s: timer %s rings (%d): %r", timer.satellite_id, timer.timer_id, ring, line)
            try:
                async with asyncio.timeout(PLAY_TIMEOUT_S):
                    error = await played
            except TimeoutError:
                error = "the satellite did not finish playing in time"
            if error is not None:
                _LOGGER.warning("%s: the timer's line was not played (%s)", timer.satellite_id, error)
            if self.bridge.attended_since(timer.satellite_id, since):
                break
        else:
            _LOGGER.info("%s: timer %s rang %d times; nobody came", timer.satellite_id, timer.timer_id, TIMER_RINGS)
            return
        _LOGGER.info("%s: timer %s dismissed after %d ring(s)", timer.satellite_id, timer.timer_id, ring)

    async def _ring_once(self, timer: TimerFinished, line: str, *, wait_if_busy: bool) -> asyncio.Future[str | None] | None:
        """One ring: None when the satellite cannot take it (the first ring waits for a busy one)."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + (TIMER_RETRY_FOR_S if wait_if_busy else 0.0)
        while True:
            try:
                return self.bridge.start_session(timer.satellite_id, text=line, prelude=TIMER_CHIME)
            except SatelliteUnavailable as err:
                if loop.time() >= give_up or self.closed:
                    # A later ring that finds the satellite in a conversation: somebody is there.
                    log = _LOGGER.warning if wait_if_busy else _LOGGER.info
                    log("%s: timer %s rang, but %s", timer.satellite_id, timer.timer_id, err)
                    return None
                await asyncio.sleep(TIMER_RETRY_S)

    # ---------------------------------------------------------------- the conversation agent
    async def _converse(self, request: ConversationRequest) -> None:
        chat, conversation_id = self._chat(request)
        async with chat.lock:
            loop = asyncio.get_running_loop()
            chat.sink.answer = loop.create_future()
            chat.session.submit(_item_create(request.text))
            chat.session.handle_text('{"type": "response.create"}')
            try:
                async with asyncio.timeout(ANSWER_TIMEOUT_S):
                    text, error = await chat.sink.answer
            except TimeoutError:
                text, error = "", "timeout"
        if error is not None:
            _LOGGER.warning("conversation %s: no answer (%s)", conversation_id, error)
            self._send(ConversationResponse(request.request_id, text or "Sorry, I could not answer that.",
                                            conversation_id=conversation_id, error=error))
            return
        self._send(ConversationResponse(request.request_id, text or "Done.", conversation_id=conversation_id,
                                        continue_conversation=text.rstrip().endswith("?")))

    def _chat(self, request: ConversationRequest) -> tuple[_Chat, str]:
        if request.conversation_id and (chat := self._chats.get(request.conversation_id)) is not None:
            if not chat.session.closed:
                self._chats.move_to_end(request.conversation_id)
                return chat, request.conversation_id
            del self._chats[request.conversation_id]  # it reached its maximum duration: start afresh
            self.sessions.closed(chat.session)
        defaults = copy.deepcopy(self.sessions.policy.defaults)
        defaults["output_modalities"] = ["text"]
        defaults.setdefault("audio", {}).setdefault("input", {})["turn_detection"] = None
        if request.extra_system_prompt:
            base = defaults.get("instructions") or ""
            defaults["instructions"] = f"{base}\n\n{request.extra_system_prompt}" if base else request.extra_system_prompt
        sink = _TextSink()
        session = self.sessions.open(sink, defaults=defaults, satellite_id=request.satellite_id,
                                     tool_scope=ToolScope("satellite", request.satellite_id))
        chat = _Chat(session, sink)
        conversation_id = request.conversation_id or session.conversation_id
        self._chats[conversation_id] = chat
        while len(self._chats) > MAX_CONVERSATIONS:
            _, old = self._chats.popitem(last=False)
            self.sessions.closed(old.session)
        return chat, conversation_id

    # ---------------------------------------------------------------- shutdown
    def close(self) -> None:
        self.closed = True
        for task in list(self._tasks):
            task.cancel()
        for chat in self._chats.values():
            self.sessions.closed(chat.session)
        self._chats.clear()


def _item_create(text: str) -> ce.ClientEvent:
    return ce.parse_client_event(json.dumps({"type": "conversation.item.create", "item": {
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}}))


HomeAssistantAssist.KEY = web.AppKey("hearth_ha_assist", HomeAssistantAssist)
