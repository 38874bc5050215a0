"""A session's responses: one typed plan per response, the engine loop, server-side tools.

`start(plan)` creates the response and runs it in a task the session owns: the
context is built from the conversation (transcripts awaited, audio attached), the
engine session streams chunks into a `ResponseBuilder`, and the response finishes
with upstream's status. When the engine calls a tool the server executes (Home
Assistant's), the response ends with that call like any other; the call then runs
with a timeout, its `function_call_output` joins the conversation, and a follow-up
response continues, so a Realtime client sees exactly the items it would see had it
run the tool itself. A failed or late tool is answered with a short spoken apology.

A reply can be prepared before its turn is committed (`speculate`): once a transcript
of the turn so far exists, the engine runs on it and its chunks are held. When the
turn commits, the response replays them at once; if the user went on, they are
dropped. A held reply is trusted only so far: its text and audio may go out before
the item's full transcript is in, but a function call waits for it, and when the full
transcript says other words the rest of the held reply is dropped and the engine
answers the full transcript (what was already said is not said twice).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, assert_never

from ..protocol import server_events as ev
from ..protocol.errors import RealtimeProtocolError
from ..protocol.ids import new_id
from ..protocol.items import FunctionCallOutput
from .conversation import Conversation, Entry
from .interfaces import (
    ContextItem,
    EngineFailure,
    EngineSession,
    ItemAudio,
    MediaSink,
    OutputAudio,
    OutputFunctionCall,
    OutputFunctionCallDelta,
    OutputText,
    OutputUsage,
    ToolCall,
    Toolbox,
    ToolResult,
    ToolTimeout,
)
from .end_of_turn import same_words
from .interfaces import ResponseChunk
from .items import Items
from .response import ResponseBuilder, ResponsePlan
from .timings import TimingLog, TurnTimings
from .usage import INPUT_AUDIO_MS_PER_TOKEN, audio_tokens, text_tokens

_LOGGER = logging.getLogger(__name__)

#: Server-side tool rounds one user turn may chain before the session stops calling tools.
MAX_TOOL_ROUNDS = 5
APOLOGY_TIMEOUT = "Sorry, that took too long to answer. Please try again."
APOLOGY_FAILED = "Sorry, I couldn't do that."
APOLOGY_TOO_MANY = "Sorry, I got stuck doing that."


@dataclass(eq=False)
class ActiveResponse:
    builder: ResponseBuilder
    plan: ResponsePlan
    timings: TurnTimings
    task: asyncio.Task[None] | None = None
    #: Calls of server-side tools the engine made in this response.
    server_calls: list[Entry] = field(default_factory=list)
    client_calls: int = 0
    #: The speculative reply this response replays, if one was prepared for its turn.
    held: HeldReply | None = None


@dataclass(eq=False)
class HeldReply:
    """A reply prepared for a turn not yet committed: the engine's chunks, held."""

    item_id: str
    #: The transcript (of the turn so far) it answers.
    text: str
    plan: ResponsePlan
    #: Ids of the conversation entries it saw before the turn's item.
    context_ids: tuple[str, ...]
    chunks: list[ResponseChunk] = field(default_factory=list)
    marks: dict[str, float] = field(default_factory=dict)
    finished: bool = False
    error: BaseException | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    #: Resolved at its first audio or call, or when it ends (the turn's full transcription waits for it).
    first_output: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    def _first_output_done(self) -> None:
        if not self.first_output.done():
            self.first_output.set_result(None)

    async def chunk(self, index: int) -> ResponseChunk | None:
        """The `index`-th chunk once the engine produced it; None after the last. Re-raises its error."""
        while index >= len(self.chunks) and not self.finished:
            self.changed.clear()
            await self.changed.wait()
        if index < len(self.chunks):
            return self.chunks[index]
        if self.error is not None:
            raise self.error
        return None

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()
        self._first_output_done()


@dataclass(frozen=True)
class ResponseHooks:
    emit: Callable[[ev.ServerEvent], None]
    spawn: Callable[..., asyncio.Task[Any]]
    session_id: str
    #: The transcription of a user audio item, started if needed (None: no transcriber).
    transcript: Callable[[Entry], asyncio.Task[Any] | None]
    #: A default-conversation response ended (its audio length in ms).
    finished: Callable[[ActiveResponse], None]
    tool_timeout_s: float = 2.5
    #: Newest conversation items the engine sees per response (the rest stays in the conversation).
    max_context_items: int = 256


class Responses:
    def __init__(self, hooks: ResponseHooks, engine: EngineSession, conversation: Conversation, items: Items,
                 toolbox: Toolbox, timings: TimingLog, media: MediaSink | None) -> None:
        self.hooks = hooks
        self.engine = engine
        self.conversation = conversation
        self.items = items
        self.toolbox = toolbox
        self.timings = timings
        self.media = media
        self.active: ActiveResponse | None = None
        self.side: set[ActiveResponse] = set()
        self.last_id: str | None = None
        self.last: ActiveResponse | None = None
        #: The speculative reply to the turn in progress, if any.
        self.held: HeldReply | None = None
        #: Held replies prepared / used / dropped, for diagnostics and tests.
        self.speculation_counts = {"started": 0, "used": 0, "dropped": 0}

    # ------------------------------------------------------------ queries

    def in_progress(self, item_id: str) -> bool:
        """Whether an item belongs to the default-conversation response still being generated."""
        active = self.active
        return active is not None and not active.builder.done and any(e.id == item_id for e in active.builder.outputs)

    @property
    def busy(self) -> bool:
        return self.active is not None

    def find(self, response_id: str) -> ActiveResponse | None:
        for candidate in [self.active, self.last, *self.side]:
            if candidate is not None and candidate.builder.id == response_id:
                return candidate
        return None

    # ------------------------------------------------------------ speculative replies

    def speculate(self, item_id: str, text: str, plan: ResponsePlan) -> None:
        """Prepare the reply to `text`, the transcript so far of the user turn `item_id`; held until it commits."""
        held = self.held
        if held is not None and held.item_id == item_id and same_words(held.text, text) and held.plan == plan:
            return
        self.drop_speculation()
        if self.active is not None or plan.input is not None or not plan.in_conversation:
            _LOGGER.debug("session %s: no speculative reply (a response is active)", self.hooks.session_id)
            return
        entries = list(self.conversation.entries())
        held = self.held = HeldReply(item_id=item_id, text=text, plan=plan, context_ids=tuple(e.id for e in entries))
        held.task = self.hooks.spawn(self._prepare(held, entries), f"speculative-reply-{item_id}")
        self.speculation_counts["started"] += 1

    def held_first_output(self) -> asyncio.Future[None] | None:
        """When the held reply has its first audio or call (None: no reply is held)."""
        return self.held.first_output if self.held is not None else None

    def drop_speculation(self) -> None:
        """The user went on (or the turn was answered otherwise): forget the held reply."""
        held, self.held = self.held, None
        if held is not None:
            held.cancel()
            self.speculation_counts["dropped"] += 1

    async def _prepare(self, held: HeldReply, entries: list[Entry]) -> None:
        try:
            scratch = ResponseBuilder(held.plan, Conversation(), lambda _event: None, None)
            items = await self._context(entries, scratch, held.plan.instructions)
            items.append(ContextItem(type="message", id=held.item_id, role="user", text=held.text))
            stream = self.engine.respond(held.plan.engine_request(items), on_mark=held.marks.setdefault)
            try:
                async for chunk in stream:
                    held.chunks.append(chunk)
                    held.changed.set()
                    if isinstance(chunk, OutputAudio | OutputFunctionCall | OutputFunctionCallDelta):
                        held._first_output_done()
            finally:
                await stream.aclose()
        except asyncio.CancelledError:
            held.error = asyncio.CancelledError()
            raise
        except Exception as err:  # surfaces in the response that replays it
            held.error = err
        finally:
            held.finished = True
            held.changed.set()
            held._first_output_done()

    def _take_held(self, plan: ResponsePlan) -> HeldReply | None:
        """The held reply, if it answers the turn this response is for, with this response's settings."""
        held, self.held = self.held, None
        if held is None:
            return None
        entries = self.conversation.entries()
        usable = (plan == held.plan and bool(entries) and entries[-1].id == held.item_id
                  and tuple(e.id for e in entries[:-1]) == held.context_ids and not isinstance(held.error, BaseException))
        if not usable:
            _LOGGER.debug("session %s: held reply to %r not usable (plan %s, item %s, context %s)",
                          self.hooks.session_id, held.text, plan == held.plan,
                          bool(entries) and entries[-1].id == held.item_id,
                          tuple(e.id for e in entries[:-1]) == held.context_ids)
            held.cancel()
            self.speculation_counts["dropped"] += 1
            return None
        self.speculation_counts["used"] += 1
        return held

    # ------------------------------------------------------------ start

    def start(self, plan: ResponsePlan, timings: TurnTimings | None = None) -> ActiveResponse:
        held = self._take_held(plan) if plan.in_conversation and plan.input is None else None
        if held is None and plan.in_conversation:
            self.drop_speculation()
        builder = ResponseBuilder(plan, self.conversation, self.hooks.emit, self.media)
        timings = timings or TurnTimings()
        timings.response_id = builder.id
        timings.mark("response_created")
        active = ActiveResponse(builder=builder, plan=plan, timings=timings, held=held)
        if plan.in_conversation:
            self.active = active
            self.last = active
        else:
            self.side.add(active)
        self.last_id = builder.id
        builder.start()
        active.task = self.hooks.spawn(self._run(active), f"response-{builder.id}",
                                       "live" if plan.in_conversation else "bulk")
        return active

    # ------------------------------------------------------------ the engine loop

    async def _context(self, entries: list[Entry], builder: ResponseBuilder, instructions: str) -> list[ContextItem]:
        items: list[ContextItem] = []
        usage = builder.usage
        usage.input_text += text_tokens(instructions)
        for entry in entries[-self.hooks.max_context_items:]:
            data = entry.item
            audio = ItemAudio(entry.audio, entry.audio_rate) if entry.audio is not None else None
            if data["type"] == "message":
                if entry.audio is not None and data["role"] == "user":
                    task = self.hooks.transcript(entry)
                    if task is not None:
                        await asyncio.shield(task)
                    data = entry.item
                    usage.input_audio += audio_tokens(entry.audio_ms, INPUT_AUDIO_MS_PER_TOKEN)
                text = " ".join(
                    (part.get("text") or part.get("transcript") or "") for part in data["content"]
                ).strip()
                usage.input_text += entry.tokens(text)
                items.append(ContextItem(type="message", id=entry.id, role=data["role"], text=text, audio=audio,
                                         truncated=entry.truncated))
            elif data["type"] == "function_call":
                usage.input_text += text_tokens(data["name"]) + text_tokens(data["arguments"])
                items.append(ContextItem(type="function_call", id=entry.id, name=data["name"],
                                         arguments=data["arguments"], call_id=data.get("call_id")))
            elif data["type"] == "function_call_output":
                usage.input_text += entry.tokens(data["output"])
                items.append(ContextItem(type="function_call_output", id=entry.id, call_id=data["call_id"],
                                         output=data["output"]))
        return items

    def _emit(self, active: ActiveResponse, chunk: ResponseChunk) -> bool:
        """One engine chunk into the response; False when the response cannot take more."""
        builder, plan = active.builder, active.plan
        if builder.done:
            return False
        match chunk:
            case OutputText():
                if not builder.add_text(chunk.delta):
                    builder.finish("incomplete", {"type": "incomplete", "reason": "max_output_tokens"})
                    return False
            case OutputAudio():
                builder.add_audio(chunk.pcm, chunk.rate, asyncio.get_running_loop().time())
                active.timings.mark("first_audio")
            case OutputFunctionCallDelta():
                builder.add_function_call_delta(chunk.call_id, chunk.name, chunk.delta)
            case OutputFunctionCall():
                entry = builder.add_function_call(chunk.name, chunk.arguments, chunk.call_id)
                if self.toolbox.handles(chunk.name) and plan.in_conversation:
                    active.server_calls.append(entry)
                else:
                    active.client_calls += 1
            case OutputUsage():
                builder.usage.measured = (chunk.input_tokens, chunk.output_tokens)
            case _:
                assert_never(chunk)
        return True

    async def _stream(self, active: ActiveResponse, entries: list[Entry], said: list[str] | None = None) -> None:
        """Ask the engine for the reply and stream it into the response.

        `said`: text deltas a held reply already spoke; the engine's reply skips them
        (and their audio) while it starts with the same words.
        """
        builder, plan, timings = active.builder, active.plan, active.timings
        items = await self._context(entries, builder, plan.instructions)
        timings.mark("context_ready")
        spoken = "".join(said or ())
        said = list(said or ())
        skipping = bool(said)
        stream = self.engine.respond(plan.engine_request(items), on_mark=timings.mark)
        try:
            async for chunk in stream:
                if skipping:
                    if isinstance(chunk, OutputText):
                        skipping = bool(said) and chunk.delta == said[0]
                        if skipping:
                            said.pop(0)
                    if skipping and isinstance(chunk, (OutputText, OutputAudio)):
                        continue
                    skipping = False
                    if isinstance(chunk, OutputText) and spoken and not spoken[-1].isspace() \
                            and not chunk.delta[:1].isspace():
                        chunk = OutputText(" " + chunk.delta)  # after the held words, not glued to them
                if not self._emit(active, chunk):
                    break
        finally:
            await stream.aclose()

    async def _replay(self, active: ActiveResponse, held: HeldReply, entries: list[Entry]) -> None:
        """Send a held reply; a call waits for the full transcript, which must say the same words."""
        timings = active.timings
        for name, at in held.marks.items():
            timings.mark(f"held_{name}", at)
        timings.mark("context_ready")
        entry = self.conversation.get(held.item_id)
        final = self.hooks.transcript(entry) if entry is not None else None
        confirmed = final is None
        said: list[str] = []
        index = 0
        try:
            while True:
                if not confirmed and final is not None and final.done():
                    if not _agrees(final, held.text):
                        break
                    confirmed = True
                    timings.mark("held_confirmed")
                next_chunk = asyncio.ensure_future(held.chunk(index))
                waits: set[asyncio.Future[Any]] = {next_chunk}
                if not confirmed and final is not None:
                    waits.add(final)
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                if not next_chunk.done():
                    next_chunk.cancel()
                    continue  # the full transcript is in: check it first
                chunk = next_chunk.result()
                for name, at in held.marks.items():
                    timings.mark(f"held_{name}", at)
                if chunk is None:
                    if not confirmed and final is not None:
                        await asyncio.shield(final)  # usage and the item's text need it
                    await self._context(entries, active.builder, active.plan.instructions)
                    return
                if isinstance(chunk, OutputFunctionCall | OutputFunctionCallDelta) and not confirmed:
                    assert final is not None
                    await asyncio.shield(final)  # never a call on a rough transcript
                    continue
                index += 1
                if isinstance(chunk, OutputText):
                    said.append(chunk.delta)
                if not self._emit(active, chunk):
                    return
        finally:
            held.cancel()
        _LOGGER.info("session %s: held reply to %r dropped: the full transcript says other words",
                     self.hooks.session_id, held.text)
        timings.mark("held_rejected")
        self.speculation_counts["dropped"] += 1
        await self._stream(active, entries, said)

    async def _run(self, active: ActiveResponse) -> None:
        builder, plan, timings = active.builder, active.plan, active.timings
        follow_up: ResponsePlan | None = None
        try:
            entries = list(plan.input) if plan.input is not None else [
                e for e in self.conversation.entries() if e not in builder.outputs]
            if active.held is not None:
                await self._replay(active, active.held, entries)
            else:
                await self._stream(active, entries)
            builder.finish("completed")
            if active.server_calls and not active.client_calls and builder.status == "completed":
                follow_up = await self._run_tools(active)
        except asyncio.CancelledError:
            builder.finish("cancelled", {"type": "cancelled", "reason": "client_cancelled"})
            raise
        except EngineFailure as err:  # an upstream the client can act on: its code and message
            _LOGGER.warning("session %s: response %s failed: %s (%s)", self.hooks.session_id, builder.id,
                            err.message, err.code)
            builder.finish("failed", {"type": "failed", "error": {
                "type": "server_error", "code": err.code, "message": err.message}})
        except Exception as err:  # an engine failure ends this response, not the session
            _LOGGER.exception("session %s: response %s failed", self.hooks.session_id, builder.id)
            builder.finish("failed", {"type": "failed", "error": {
                "type": "server_error", "code": "engine_error", "message": f"The speech engine failed: {err}"}})
        finally:
            if follow_up is None:
                self._finished(active)
        if follow_up is not None:
            if self.active is active:
                self.timings.finished(timings)
                self.start(follow_up)
            else:
                self._finished(active)

    async def _run_tools(self, active: ActiveResponse) -> ResponsePlan:
        """Execute the response's server-side calls; returns the follow-up response's plan."""
        plan = active.plan
        if plan.tool_round >= MAX_TOOL_ROUNDS:
            _LOGGER.warning("session %s: %d tool rounds in a row; stopping", self.hooks.session_id, plan.tool_round)
            return plan.follow_up(say=APOLOGY_TOO_MANY)
        apology: str | None = None
        for entry in active.server_calls:
            item = entry.item
            call = ToolCall(name=item["name"], arguments=item["arguments"], call_id=item["call_id"],
                            session_id=self.hooks.session_id)
            result = await self._call(call)
            if result.error is not None and apology is None:
                apology = result.speech or (APOLOGY_TIMEOUT if result.error == "timeout" else APOLOGY_FAILED)
            output = FunctionCallOutput(id=new_id("item"), object="realtime.item", type="function_call_output",
                                        status="completed", call_id=call.call_id, output=result.output)
            self.items.add_server_item(output.wire())
        return plan.follow_up(say=apology)

    async def _call(self, call: ToolCall) -> ToolResult:
        started = asyncio.get_running_loop().time()
        try:
            result = await asyncio.wait_for(self.toolbox.call(call), self.hooks.tool_timeout_s)
        except (ToolTimeout, TimeoutError):
            _LOGGER.warning("session %s: tool %s did not answer within %.1f s", self.hooks.session_id, call.name,
                            self.hooks.tool_timeout_s)
            return ToolResult(output=json.dumps({"error": {"code": "timeout", "message": "The tool did not answer in time."}}),
                              error="timeout")
        except Exception as err:  # a broken tool is the tool's failure, not the session's
            _LOGGER.exception("session %s: tool %s failed", self.hooks.session_id, call.name)
            return ToolResult(output=json.dumps({"error": {"code": "failed", "message": str(err)[:500]}}),
                              error="failed")
        _LOGGER.info("session %s: tool %s answered in %.0f ms%s", self.hooks.session_id, call.name,
                     1000 * (asyncio.get_running_loop().time() - started), f" (error: {result.error})" if result.error else "")
        return result

    def _finished(self, active: ActiveResponse) -> None:
        if self.active is active:
            self.active = None
            self.hooks.finished(active)
        self.side.discard(active)
        self.timings.finished(active.timings)

    # ------------------------------------------------------------ cancel

    def cancel(self, active: ActiveResponse, reason: str) -> None:
        active.builder.finish("cancelled", {"type": "cancelled", "reason": reason})
        if active.task is not None:
            active.task.cancel()
        if self.active is active:
            self.active = None
        self.side.discard(active)

    def cancel_event(self, response_id: str | None) -> None:
        candidates = ([self.active] if self.active else []) + list(self.side)
        if response_id:
            candidates = [a for a in candidates if a.builder.id == response_id]
        live = [a for a in candidates if not a.builder.done]
        if not live:
            raise RealtimeProtocolError(
                message="Cancellation failed: no active response found.", code="response_cancel_not_active")
        self.cancel(live[0], "client_cancelled")

    def interrupt(self, reason: str = "turn_detected") -> ActiveResponse | None:
        """Barge-in: stop the default-conversation response (or its pending tool round)."""
        active = self.active
        if active is None:
            return None
        if not active.builder.done:
            self.cancel(active, reason)
            return active
        if active.task is not None:  # between a server-side call and its follow-up
            active.task.cancel()
        self.active = None
        return active

    def close(self) -> None:
        self.drop_speculation()
        for active in [self.active, *self.side]:
            if active is not None and active.task is not None:
                active.task.cancel()


def _agrees(final: asyncio.Task[Any], text: str) -> bool:
    """Whether the item's finished full transcript says what the held reply answered."""
    if final.cancelled() or final.exception() is not None:
        return False
    transcript = final.result()
    return transcript is not None and same_words(transcript.text, text)
