"""The `llm` brain: any OpenAI-compatible Chat Completions endpoint, streamed.

llama.cpp's server, Ollama, vLLM, LM Studio and OpenAI all speak `POST /v1/chat/completions`
with `"stream": true`; this brain talks to them through the `openai` package's async client.

* History comes from the request's context items: messages (a truncated assistant turn holds
  only the words that were heard, so the model sees what the listener heard), each
  `function_call` as an assistant `tool_calls` entry with its `call_id`, each
  `function_call_output` as the `tool` message right after its call. Calls without an
  output and outputs without a call are left out (Chat endpoints reject them).
* Text deltas are yielded as they arrive, so the cascade's sentence splitter speaks the first
  sentence while the model is still writing. Tool calls stream too: each piece of a call's
  arguments is yielded as `OutputFunctionCallDelta` as it arrives (pieces of parallel calls
  interleave, each under its call's id), and once the model has finished, each call is
  yielded complete as `OutputFunctionCall`, with the model's own call id. The endpoint's token usage is
  yielded last as `OutputUsage`.
* Closing or cancelling the iteration closes the upstream HTTP stream at once.
* An upstream error, a refusal or a timeout is spoken as a short apology and then raised as
  `EngineFailure`, so the response ends `failed` with the code and the upstream's message.

A slow first token (over `slow_first_token_s`) is logged with its time.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import openai
from openai import AsyncOpenAI

from hearth.server.session.interfaces import (
    EngineFailure,
    OutputFunctionCall,
    OutputFunctionCallDelta,
    OutputText,
    OutputUsage,
    ResponseRequest,
)

from .brain import BrainEvent
from .options import LlmConfig

__all__ = ["APOLOGIES", "LlmBrain", "LlmConfig", "chat_messages", "chat_tool_choice", "chat_tools"]

_LOGGER = logging.getLogger(__name__)

APOLOGIES: dict[str, str] = {
    "upstream_timeout": "Sorry, the language model is taking too long to answer.",
    "upstream_rate_limited": "Sorry, the language model is busy right now.",
    "upstream_unreachable": "Sorry, I can't reach the language model right now.",
    "upstream_refusal": "Sorry, I can't help with that.",
    "upstream_error": "Sorry, the language model ran into a problem.",
}


class LlmBrain:
    """A brain that streams a Chat Completions model's reply and tool calls."""

    def __init__(self, config: LlmConfig, *, client: AsyncOpenAI | None = None) -> None:
        self.config = config
        self._client = client or AsyncOpenAI(
            base_url=config.base_url,
            api_key=config.key(),
            max_retries=config.max_retries,
            timeout=openai.Timeout(config.total_timeout_s, connect=config.connect_timeout_s),
            default_headers=dict(config.headers) or None,
        )

    async def close(self) -> None:
        """Close the HTTP connection pool (server shutdown)."""
        await self._client.close()

    def request_body(self, request: ResponseRequest) -> dict[str, Any]:
        """The Chat Completions parameters for `request` (without `stream`)."""
        config = self.config
        body: dict[str, Any] = {"model": config.model, "messages": chat_messages(request)}
        tools = chat_tools(request.tools)
        if tools:
            body["tools"] = tools
            choice = chat_tool_choice(request.tool_choice, tools)
            if choice is not None:
                body["tool_choice"] = choice
        temperature = request.temperature if request.temperature is not None else config.temperature
        if temperature is not None:
            body["temperature"] = temperature
        if request.max_output_tokens is not None:
            body[config.max_tokens_field] = request.max_output_tokens
        if config.stream_usage:
            body["stream_options"] = {"include_usage": True}
        return body

    async def respond(self, request: ResponseRequest) -> AsyncIterator[BrainEvent]:
        """Stream the model's reply: text deltas, argument pieces as they come, complete calls, usage."""
        reply = _Reply()
        try:
            async for event in self._stream(request, reply):
                yield event
        except EngineFailure as failure:
            _LOGGER.warning("llm %s: %s (%s)", self.config.model, failure.message, failure.code)
            yield OutputText(reply.apology_prefix() + APOLOGIES.get(failure.code, APOLOGIES["upstream_error"]))
            raise

    async def _stream(self, request: ResponseRequest, reply: _Reply) -> AsyncIterator[BrainEvent]:
        config = self.config
        body = self.request_body(request)
        started = time.monotonic()
        deadline = started + config.total_timeout_s
        first_deadline = started + min(config.first_token_timeout_s, config.total_timeout_s)
        stream: openai.AsyncStream[Any] | None = None
        try:
            async with asyncio.timeout_at(_loop_time(first_deadline)):
                stream = await self._client.chat.completions.create(
                    **body, stream=True, extra_body=dict(config.extra_body) or None)
            chunks = stream.__aiter__()
            calls: dict[int, _Call] = {}
            first = True
            while True:
                # A timeout per chunk, never across a yield (that would cancel the consumer).
                async with asyncio.timeout_at(_loop_time(first_deadline if first else deadline)):
                    try:
                        chunk = await chunks.__anext__()
                    except StopAsyncIteration:
                        break
                if first:
                    first = False
                    self._log_first_token(time.monotonic() - started)
                if chunk.usage is not None:
                    reply.usage = OutputUsage(input_tokens=chunk.usage.prompt_tokens or 0,
                                              output_tokens=chunk.usage.completion_tokens or 0)
                for choice in chunk.choices:
                    delta = choice.delta
                    if delta.content:
                        text = reply.think.feed(delta.content)
                        if text:
                            reply.last_text = text
                            yield OutputText(text)
                    if getattr(delta, "refusal", None):
                        reply.refusal += delta.refusal
                    for piece in delta.tool_calls or []:
                        call = calls.setdefault(piece.index, _Call())
                        streamed = call.add(piece)
                        if streamed is not None:
                            yield streamed
                    if choice.finish_reason == "content_filter":
                        reply.refusal = reply.refusal or "the endpoint's content filter stopped the reply"
            held = reply.think.flush()
            if held:
                reply.last_text = held
                yield OutputText(held)
            if reply.refusal:
                raise EngineFailure("upstream_refusal", f"The model refused: {reply.refusal}")
            for index in sorted(calls):
                call = calls[index]
                if not call.name:
                    raise EngineFailure("upstream_error", f"The model streamed a tool call without a name (index {index}).")
                # Some servers send no id; one is made so the call's result can find its way back.
                yield OutputFunctionCall(name=call.name, arguments="".join(call.arguments) or "{}",
                                         call_id=call.call_id())
            if reply.usage is not None:
                yield reply.usage
        except TimeoutError as err:
            waited = time.monotonic() - started
            stage = "the first token" if stream is None or first else "the rest of the reply"
            raise EngineFailure("upstream_timeout",
                                f"The language model did not send {stage} within {waited:.1f} s.") from err
        except openai.APITimeoutError as err:
            raise EngineFailure("upstream_timeout", f"The language model timed out: {err}") from err
        except openai.RateLimitError as err:
            raise EngineFailure("upstream_rate_limited", f"The language model is rate limited: {_api_message(err)}") from err
        except openai.APIStatusError as err:
            raise EngineFailure("upstream_error",
                                f"The language model answered HTTP {err.status_code}: {_api_message(err)}") from err
        except openai.APIConnectionError as err:
            if stream is not None:
                raise EngineFailure("upstream_error",
                                    f"The connection to the language model broke mid-reply: {err.__cause__ or err}") from err
            raise EngineFailure("upstream_unreachable",
                                f"Cannot reach the language model at {config.base_url}: {err.__cause__ or err}") from err
        except openai.APIError as err:  # an error event inside the stream
            raise EngineFailure("upstream_error", f"The language model failed: {_api_message(err)}") from err
        except EngineFailure:
            raise
        except (OSError, ValueError) as err:  # a dropped connection or a broken chunk mid-stream
            raise EngineFailure("upstream_error", f"The language model's stream broke: {err!r}") from err
        finally:
            if stream is not None:
                # Closing the unread response closes the connection: the endpoint stops generating.
                await stream.close()

    def _log_first_token(self, seconds: float) -> None:
        if seconds > self.config.slow_first_token_s:
            _LOGGER.warning("llm %s: slow first token after %.0f ms", self.config.model, seconds * 1000)
        else:
            _LOGGER.debug("llm %s: first token after %.0f ms", self.config.model, seconds * 1000)


# --------------------------------------------------------------------------- request building


def chat_messages(request: ResponseRequest) -> list[dict[str, Any]]:
    """Chat messages from the instructions and the context items, in order."""
    messages: list[dict[str, Any]] = []
    if request.instructions.strip():
        messages.append({"role": "system", "content": request.instructions})
    items = request.items
    outputs = {item.call_id: item for item in items if item.type == "function_call_output" and item.call_id}
    calls = {item.call_id for item in items if item.type == "function_call" and item.call_id}
    index = 0
    while index < len(items):
        item = items[index]
        index += 1
        if item.type == "message":
            if item.text.strip():
                messages.append({"role": item.role or "user", "content": item.text})
        elif item.type == "function_call":
            # Consecutive calls are one assistant turn; their outputs follow it directly.
            group = [item]
            while index < len(items) and items[index].type == "function_call":
                group.append(items[index])
                index += 1
            answered = [c for c in group if c.call_id in outputs]
            for dropped in (c for c in group if c.call_id not in outputs):
                _LOGGER.debug("llm: leaving out call %s (%s) without an output", dropped.call_id, dropped.name)
            if not answered:
                continue
            tool_calls = [{"id": c.call_id, "type": "function",
                           "function": {"name": c.name or "", "arguments": c.arguments or "{}"}} for c in answered]
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant" and "tool_calls" not in last:
                last["tool_calls"] = tool_calls  # the text the model said before calling
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": tool_calls})
            messages += [{"role": "tool", "tool_call_id": c.call_id, "content": outputs[c.call_id].output or ""}
                         for c in answered]
        elif item.call_id not in calls:
            _LOGGER.debug("llm: leaving out output %s without its call", item.call_id)
    return messages


def chat_tools(tools: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Realtime function tools (`{"type", "name", "description", "parameters"}`) in Chat form."""
    out = []
    for tool in tools:
        if tool.get("type", "function") != "function" or not tool.get("name"):
            continue
        function: dict[str, Any] = {"name": tool["name"]}
        if tool.get("description"):
            function["description"] = tool["description"]
        function["parameters"] = tool.get("parameters") or {"type": "object", "properties": {}}
        out.append({"type": "function", "function": function})
    return out


def chat_tool_choice(choice: str | Mapping[str, Any], tools: Sequence[Mapping[str, Any]]) -> str | dict[str, Any] | None:
    """Realtime `tool_choice` in Chat form; None (the endpoint's default) for what Chat cannot say."""
    if isinstance(choice, str):
        return choice if choice in ("auto", "none", "required") else None
    name = choice.get("name")
    if choice.get("type") == "function" and name:
        if not any(t["function"]["name"] == name for t in tools):
            raise EngineFailure("invalid_tool_choice", f"tool_choice names {name!r}, which is not among the tools.")
        return {"type": "function", "function": {"name": name}}
    return None


# --------------------------------------------------------------------------- stream state


@dataclass
class _Call:
    id: str | None = None
    name: str = ""
    arguments: list[str] = field(default_factory=list)

    def call_id(self) -> str:
        """The model's id; some servers send none, so one is made for the result to find its way back."""
        if not self.id:
            self.id = f"call_{uuid.uuid4().hex[:24]}"
        return self.id

    def add(self, piece: Any) -> OutputFunctionCallDelta | None:
        """Take one streamed piece; returns the arguments piece to stream on, once the name is known."""
        if piece.id and not self.id:
            self.id = piece.id
        function = piece.function
        if function is None:
            return None
        if function.name:
            self.name += function.name  # sent whole in the first piece; some servers split it
        if not function.arguments:
            return None
        self.arguments.append(function.arguments)
        if not self.name:
            return None  # a nameless call cannot open an item; it fails at the end
        return OutputFunctionCallDelta(call_id=self.call_id(), name=self.name, delta=function.arguments)


class _ThinkFilter:
    """Drops a leading `<think>...</think>` block (reasoning models on Ollama and llama.cpp).

    A voice assistant must not read its reasoning aloud. Text is held back only while it
    could still be the start of such a block.
    """

    _OPEN, _CLOSE = "<think>", "</think>"

    def __init__(self) -> None:
        self._held = ""
        self._state: Literal["start", "thinking", "talking"] = "start"
        self._after_block = False

    def feed(self, text: str) -> str:
        if self._state == "talking":
            if self._after_block:  # the blank lines after the block are not speech either
                text = text.lstrip()
                self._after_block = not text
            return text
        self._held += text
        if self._state == "start":
            head = self._held.lstrip()
            if head.startswith(self._OPEN):
                self._state = "thinking"
            elif self._OPEN.startswith(head):
                return ""  # maybe the start of the tag: wait
            else:
                self._state = "talking"
                out, self._held = self._held, ""
                return out
        end = self._held.find(self._CLOSE)
        if end < 0:
            return ""
        self._state = "talking"
        out, self._held = self._held[end + len(self._CLOSE):].lstrip(), ""
        self._after_block = not out
        return out

    def flush(self) -> str:
        """Text still held at the end of the reply (an unfinished tag is not a block)."""
        out, self._held = ("", "") if self._state == "thinking" else (self._held, "")
        return out


@dataclass
class _Reply:
    last_text: str = ""
    refusal: str = ""
    usage: OutputUsage | None = None
    think: _ThinkFilter = field(default_factory=_ThinkFilter)

    def apology_prefix(self) -> str:
        """A space between text already streamed and the apology."""
        return " " if self.last_text and not self.last_text[-1].isspace() else ""


def _api_message(err: openai.APIError) -> str:
    """The upstream's own error message (`{"error": {"message": ...}}`), else the exception text."""
    body = err.body
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        if isinstance(inner, Mapping) and isinstance(inner.get("message"), str):
            return inner["message"]
        if isinstance(inner, str):
            return inner
    return err.message or str(err)


def _loop_time(monotonic_deadline: float) -> float:
    """A `time.monotonic()` deadline on the running loop's clock."""
    return asyncio.get_running_loop().time() + (monotonic_deadline - time.monotonic())

