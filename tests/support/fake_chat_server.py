"""A scripted OpenAI-compatible Chat Completions server for tests and benchmarks.

No language model ships in a trustworthy package here, so the LLM brain is tested against
this stand-in for the outside service. It speaks the exact streaming wire format of
`POST /v1/chat/completions` with `"stream": true`:

* `data: {chat.completion.chunk JSON}\\n\\n` events, the first carrying `role`, text as
  `content` deltas, tool calls as `tool_calls` deltas (the first piece of each call has its
  `index`, `id`, `type` and `function.name`; later pieces only `index` and
  `function.arguments`), a last choice chunk with `finish_reason`, and `data: [DONE]`;
* with `stream_options.include_usage`, every chunk has `"usage": null` and one more chunk
  with empty `choices` carries the usage;
* errors as OpenAI sends them: an HTTP status with `{"error": {"message", "type", "param",
  "code"}}`.

Every reply is scripted per request (`FakeChatServer.script`), every request recorded with
its body and whether the client closed the stream before the end. Tests check the chunks
parse with the `openai` package's own `ChatCompletionChunk` and drive it with `AsyncOpenAI`.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

#: OpenAI's error bodies for the statuses tests use.
_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests. Please try again in 20s."),
    500: ("server_error", None, "The server had an error while processing your request. Sorry about that!"),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}


@dataclass(frozen=True)
class ScriptedCall:
    """One tool call the model makes; `arguments` streams in `pieces` parts."""

    name: str
    arguments: str
    id: str | None = None
    pieces: int = 3


@dataclass(frozen=True)
class Reply:
    """What the fake model answers to one request.

    `text` is streamed as the given pieces (a string streams a word at a time). Tool calls
    follow the text; `parallel=True` interleaves their argument pieces as some servers do.
    `status` other than 200 answers with OpenAI's error JSON instead of a stream. `hang`
    sends the headers and then nothing until the client goes away.
    """

    text: str | Sequence[str] = ""
    tool_calls: Sequence[ScriptedCall] = ()
    parallel: bool = False
    refusal: str | None = None
    #: Seconds between the headers and the first chunk (the model's time to first token).
    first_token_delay: float = 0.0
    #: Seconds between later chunks.
    chunk_delay: float = 0.0
    finish_reason: str | None = None
    status: int = 200
    error_message: str | None = None
    hang: bool = False
    #: Stop after this many content chunks without finishing (a dropped connection).
    drop_after: int | None = None
    prompt_tokens: int = 17
    completion_tokens: int | None = None
    #: Hold the end of the reply (after the content, before `finish_reason`) until this is set,
    #: so a test can see what the client does while the stream is still open.
    hold_end: threading.Event | None = None


@dataclass
class RecordedRequest:
    """One request as the fake saw it."""

    body: dict[str, Any]
    headers: dict[str, str]
    received_at: float
    #: True when the client closed the connection before the reply ended.
    client_closed: bool = False
    #: True when the whole reply (through `data: [DONE]`) was written.
    completed: bool = False
    first_chunk_at: float | None = None
    chunks_sent: int = 0
    ended: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages") or [])


Script = Callable[[RecordedRequest], Reply]


class _ClientGone(Exception):
    pass


class FakeChatServer:
    """`async with FakeChatServer() as fake:` serves on a free loopback port.

    Set `fake.script` to a callable of the request (or queue replies with `fake.push`);
    `fake.base_url` is what a client's `base_url` takes (`http://127.0.0.1:PORT/v1`).
    """

    def __init__(self, *, api_key: str | None = None, model: str = "fake-model") -> None:
        self.api_key = api_key
        self.model = model
        self.requests: list[RecordedRequest] = []
        self.script: Script | None = None
        self._queue: list[Reply] = []
        self._runner: web.AppRunner | None = None
        self.port = 0
        self._arrived = asyncio.Condition()

    # ------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> FakeChatServer:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._handle)
        app.router.add_get("/v1/models", self._models)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # ------------------------------------------------------------ scripting

    def push(self, *replies: Reply) -> None:
        """Answer the next requests with these replies, in order (before `script`)."""
        self._queue.extend(replies)

    def _reply_for(self, recorded: RecordedRequest) -> Reply:
        if self._queue:
            return self._queue.pop(0)
        if self.script is not None:
            return self.script(recorded)
        return Reply(text="Hello from the fake model.")

    async def wait_for_requests(self, count: int, timeout: float = 5.0) -> list[RecordedRequest]:
        """Wait until `count` requests have arrived."""
        async with self._arrived:
            await asyncio.wait_for(self._arrived.wait_for(lambda: len(self.requests) >= count), timeout)
        return self.requests

    # ------------------------------------------------------------ handlers

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [
            {"id": self.model, "object": "model", "created": 0, "owned_by": "hearth-tests"}]})

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return _error(400, "We could not parse the JSON body of your request.")
        recorded = RecordedRequest(body=body, headers=dict(request.headers), received_at=time.monotonic())
        async with self._arrived:
            self.requests.append(recorded)
            self._arrived.notify_all()
        try:
            if self.api_key is not None and request.headers.get("Authorization") != f"Bearer {self.api_key}":
                return _error(401)
            if not body.get("stream"):
                return _error(400, "This fake only streams: set 'stream': true.")
            reply = self._reply_for(recorded)
            if reply.status != 200:
                if reply.first_token_delay:
                    await asyncio.sleep(reply.first_token_delay)
                return _error(reply.status, reply.error_message)
            return await self._stream(request, recorded, reply)
        finally:
            recorded.ended.set()

    async def _stream(self, request: web.Request, recorded: RecordedRequest, reply: Reply) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8",
                                               "Cache-Control": "no-cache"})
        await response.prepare(request)
        writer = _ChunkWriter(request, response, recorded, self.model, reply,
                              bool((recorded.body.get("stream_options") or {}).get("include_usage")))
        try:
            if reply.hang:
                await writer.wait_for_close()
                return response
            await writer.pause(reply.first_token_delay)
            await writer.run()
            recorded.completed = True
        except _ClientGone:
            recorded.client_closed = True
        return response


class _ChunkWriter:
    """Writes one scripted reply as chat.completion.chunk events."""

    def __init__(self, request: web.Request, response: web.StreamResponse, recorded: RecordedRequest,
                 model: str, reply: Reply, include_usage: bool) -> None:
        self.request = request
        self.response = response
        self.recorded = recorded
        self.reply = reply
        self.include_usage = include_usage
        self.base = {"id": f"chatcmpl-{id(recorded):x}", "object": "chat.completion.chunk",
                     "created": int(time.time()), "model": model, "system_fingerprint": "fp_hearth_fake"}
        self.content_chunks = 0

    def _gone(self) -> bool:
        transport = self.request.transport
        return transport is None or transport.is_closing()

    async def pause(self, seconds: float) -> None:
        """Sleep, noticing a client that closes meanwhile."""
        deadline = time.monotonic() + seconds
        while True:
            if self._gone():
                raise _ClientGone
            left = deadline - time.monotonic()
            if left <= 0:
                return
            await asyncio.sleep(min(left, 0.01))

    async def wait_for_close(self) -> None:
        while not self._gone():
            await asyncio.sleep(0.01)
        raise _ClientGone

    async def send(self, data: dict[str, Any] | str, *, delay: bool = True) -> None:
        if delay and self.recorded.chunks_sent and self.reply.chunk_delay:
            await self.pause(self.reply.chunk_delay)
        if self._gone():
            raise _ClientGone
        payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
        try:
            await self.response.write(f"data: {payload}\n\n".encode())
        except (ConnectionResetError, ConnectionError) as err:
            raise _ClientGone from err
        if self.recorded.first_chunk_at is None:
            self.recorded.first_chunk_at = time.monotonic()
        self.recorded.chunks_sent += 1

    def chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        data: dict[str, Any] = {**self.base, "choices": [
            {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]}
        if self.include_usage:
            data["usage"] = None
        return data

    async def content(self, delta: dict[str, Any]) -> None:
        drop = self.reply.drop_after
        if drop is not None and self.content_chunks >= drop:
            # Close the connection mid-stream, as a crashing upstream does.
            self.request.transport.close()  # type: ignore[union-attr]
            raise _ClientGone
        await self.send(self.chunk(delta))
        self.content_chunks += 1

    async def run(self) -> None:
        reply = self.reply
        await self.send(self.chunk({"role": "assistant", "content": "", "refusal": None}), delay=False)
        pieces = _pieces(reply.text)
        for piece in pieces:
            await self.content({"content": piece})
        if reply.refusal is not None:
            for piece in _pieces(reply.refusal):
                await self.content({"refusal": piece})
        calls = list(reply.tool_calls)
        for step in _call_steps(calls, reply.parallel):
            await self.content({"tool_calls": [step]})
        if reply.hold_end is not None:
            while not reply.hold_end.is_set():
                await self.pause(0.01)
        finish = reply.finish_reason or ("tool_calls" if calls else "stop")
        await self.send(self.chunk({}, finish))
        if self.include_usage:
            completion = reply.completion_tokens
            if completion is None:
                completion = len(pieces) + sum(c.pieces + 1 for c in calls)
            await self.send({**self.base, "choices": [], "usage": {
                "prompt_tokens": reply.prompt_tokens, "completion_tokens": completion,
                "total_tokens": reply.prompt_tokens + completion,
                "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                              "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}})
        await self.send("[DONE]")


def _pieces(text: str | Sequence[str]) -> list[str]:
    if not isinstance(text, str):
        return [p for p in text if p]
    return re.findall(r"\s*\S+\s*?(?=\s|$)|\s+$", text)


def _split(text: str, pieces: int) -> list[str]:
    if pieces <= 1 or len(text) <= 1:
        return [text]
    size = -(-len(text) // pieces)
    return [text[i : i + size] for i in range(0, len(text), size)]


def _call_steps(calls: Sequence[ScriptedCall], parallel: bool) -> list[dict[str, Any]]:
    """The tool_calls deltas: a header piece per call, then the argument pieces."""
    per_call: list[list[dict[str, Any]]] = []
    for index, call in enumerate(calls):
        call_id = call.id or f"call_{index}_{abs(hash((call.name, call.arguments))) % 10**12:012d}"
        steps = [{"index": index, "id": call_id, "type": "function",
                  "function": {"name": call.name, "arguments": ""}}]
        steps += [{"index": index, "function": {"arguments": piece}} for piece in _split(call.arguments, call.pieces)]
        per_call.append(steps)
    if not parallel:
        return [step for steps in per_call for step in steps]
    out: list[dict[str, Any]] = []
    for round_ in range(max((len(s) for s in per_call), default=0)):
        out += [steps[round_] for steps in per_call if round_ < len(steps)]
    return out


def _error(status: int, message: str | None = None) -> web.Response:
    kind, code, default = _ERRORS.get(status, ("server_error", None, "Error."))
    return web.json_response({"error": {"message": message or default, "type": kind, "param": None, "code": code}},
                             status=status)


class ThreadedFakeChatServer:
    """A FakeChatServer on its own event loop in a thread, for tests that span several loops.

    Scripting (`push`, `script`) and the recorded requests are plain attributes, read from
    the test's thread; `eventually` polls them.
    """

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-chat-server", daemon=True)
        self.fake: FakeChatServer | None = None

    def __enter__(self) -> FakeChatServer:
        self._thread.start()

        async def start() -> FakeChatServer:
            return await FakeChatServer(**self._options).__aenter__()

        self.fake = asyncio.run_coroutine_threadsafe(start(), self._loop).result(10)
        return self.fake

    def __exit__(self, *exc: object) -> None:
        if self.fake is not None:
            asyncio.run_coroutine_threadsafe(self.fake.__aexit__(None, None, None), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


async def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until `check()` is true (polling every 10 ms); AssertionError after `timeout`."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.01)
