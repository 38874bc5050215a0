"""The scripted Chat Completions server is faithful: the `openai` package's types and client accept it."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import openai
import pytest
from openai.types.chat import ChatCompletionChunk

from tests.support.fake_chat_server import FakeChatServer, Reply, ScriptedCall

BODY = {"model": "fake-model", "stream": True, "messages": [{"role": "user", "content": "hi"}]}


async def raw_events(fake: FakeChatServer, body: dict) -> list[str]:
    """The `data:` payloads of one streamed reply, read off the socket line by line."""
    payloads = []
    async with aiohttp.ClientSession() as http, http.post(f"{fake.base_url}/chat/completions", json=body) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        buffer = (await resp.read()).decode()
    for event in buffer.split("\n\n"):
        if not event:
            continue
        assert event.startswith("data: "), event
        payloads.append(event.removeprefix("data: "))
    return payloads


async def test_text_stream_is_valid_chunks_ending_in_done() -> None:
    async with FakeChatServer() as fake:
        fake.push(Reply(text="Hello there. How are you?"))
        payloads = await raw_events(fake, BODY)
    assert payloads[-1] == "[DONE]"
    chunks = [ChatCompletionChunk.model_validate(json.loads(p)) for p in payloads[:-1]]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Hello there. How are you?"
    assert [c.choices[0].finish_reason for c in chunks][-1] == "stop"
    assert all(c.usage is None for c in chunks)
    assert all(c.object == "chat.completion.chunk" for c in chunks)


async def test_tool_call_deltas_and_usage_chunk() -> None:
    async with FakeChatServer() as fake:
        fake.push(Reply(tool_calls=[ScriptedCall("get_weather", '{"city": "Paris"}', id="call_a"),
                                    ScriptedCall("get_time", '{"zone": "CET"}', id="call_b")], parallel=True))
        payloads = await raw_events(fake, {**BODY, "stream_options": {"include_usage": True}})
    chunks = [ChatCompletionChunk.model_validate(json.loads(p)) for p in payloads[:-1]]
    usage = chunks[-1]
    assert usage.choices == [] and usage.usage is not None and usage.usage.prompt_tokens == 17
    assert all("usage" in json.loads(p) for p in payloads[:-1])  # null until the last, as upstream sends
    deltas = [tc for c in chunks[:-1] for choice in c.choices for tc in choice.delta.tool_calls or []]
    headers = [d for d in deltas if d.id]
    assert [(d.index, d.id, d.function.name) for d in headers] == [(0, "call_a", "get_weather"), (1, "call_b", "get_time")]
    # Parallel calls interleave: the second header comes before the first call's arguments end.
    assert deltas.index(headers[1]) < max(i for i, d in enumerate(deltas) if d.index == 0)
    for index, arguments in ((0, '{"city": "Paris"}'), (1, '{"zone": "CET"}')):
        assert "".join(d.function.arguments or "" for d in deltas if d.index == index) == arguments
    assert chunks[-2].choices[0].finish_reason == "tool_calls"


async def test_real_openai_client_reads_text_tools_usage_and_errors() -> None:
    async with FakeChatServer(api_key="sk-test") as fake:
        client = openai.AsyncOpenAI(base_url=fake.base_url, api_key="sk-test", max_retries=0)
        fake.push(Reply(text="Two plus two is four.", tool_calls=[ScriptedCall("add", '{"a": 2, "b": 2}', id="call_1")]),
                  Reply(status=429), Reply(status=500))
        stream = await client.chat.completions.create(
            model="fake-model", messages=[{"role": "user", "content": "2+2?"}], stream=True,
            stream_options={"include_usage": True})
        text, arguments, usage = "", "", None
        async for chunk in stream:
            if chunk.usage:
                usage = chunk.usage
            for choice in chunk.choices:
                text += choice.delta.content or ""
                for call in choice.delta.tool_calls or []:
                    arguments += call.function.arguments or ""
        assert text == "Two plus two is four."
        assert json.loads(arguments) == {"a": 2, "b": 2}
        assert usage is not None and usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
        assert fake.requests[0].messages == [{"role": "user", "content": "2+2?"}]
        assert fake.requests[0].completed and not fake.requests[0].client_closed

        with pytest.raises(openai.RateLimitError) as limited:
            await client.chat.completions.create(model="fake-model", messages=[], stream=True)
        assert limited.value.code == "rate_limit_exceeded"
        with pytest.raises(openai.InternalServerError):
            await client.chat.completions.create(model="fake-model", messages=[], stream=True)

        bad = openai.AsyncOpenAI(base_url=fake.base_url, api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            await bad.chat.completions.create(model="fake-model", messages=[], stream=True)
        await client.close()
        await bad.close()


async def test_client_closing_the_stream_is_recorded_and_delays_are_kept() -> None:
    async with FakeChatServer() as fake:
        client = openai.AsyncOpenAI(base_url=fake.base_url, api_key="x", max_retries=0)
        fake.push(Reply(text="one two three four five six", first_token_delay=0.2, chunk_delay=0.05))
        started = time.monotonic()
        stream = await client.chat.completions.create(model="m", messages=[], stream=True)
        async for chunk in stream:
            if chunk.choices[0].delta.content:
                break
        first_text = time.monotonic() - started
        await stream.close()
        recorded = fake.requests[0]
        await asyncio.wait_for(recorded.ended.wait(), 2)
        assert recorded.client_closed and not recorded.completed
        assert first_text >= 0.2, "the first token's delay is kept"
        await client.close()
