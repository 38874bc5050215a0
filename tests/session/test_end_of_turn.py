"""The staged end of turn and speculative replies, with the scripted engine (not timed).

Audio is appended faster than real time; where a test needs a pause to be *seen* by the
session (a fast guess to finish inside a silence), it yields to the loop between appends.
"""

from __future__ import annotations

import asyncio
import base64
import json

import numpy as np
from openai.types.realtime import RealtimeServerEvent
from pydantic import TypeAdapter

from hearth.server.session.end_of_turn import TurnGuess, reads_unfinished, same_words, sounds_complete
from hearth.server.session.interfaces import OutputAudio, OutputText, ResponseRequest
from hearth.server.session.session import RealtimeSession, SessionOptions
from hearth.server.session.testing import RecordingSink, ScriptedEngine, function_call

RATE = 24000
SERVER_EVENT = TypeAdapter(RealtimeServerEvent)


def tone(ms: int, amplitude: float = 0.3) -> bytes:
    t = np.arange(RATE * ms // 1000) / RATE
    return (np.sin(2 * np.pi * 220 * t) * amplitude * 32767).astype("<i2").tobytes()


def silence(ms: int) -> bytes:
    return np.zeros(RATE * ms // 1000, dtype="<i2").tobytes()


class Client:
    def __init__(self, engine: ScriptedEngine) -> None:
        self.engine = engine
        self.sink = RecordingSink()
        self.session = RealtimeSession(engine, self.sink, SessionOptions())
        self.session.start()

    def send(self, event: dict) -> None:
        self.session.handle_text(json.dumps(event))

    def append(self, pcm: bytes, chunk_ms: int = 40) -> None:
        step = RATE * 2 * chunk_ms // 1000
        for offset in range(0, len(pcm), step):
            chunk = base64.b64encode(pcm[offset : offset + step]).decode()
            self.send({"type": "input_audio_buffer.append", "audio": chunk})

    def validate_all(self) -> None:
        for event in self.sink.events:
            SERVER_EVENT.validate_python(event)


AUDIO = OutputAudio(np.zeros(2400, dtype=np.int16), 24000)


def last_user_text(request: ResponseRequest) -> str:
    return [item.text for item in request.items if item.role == "user"][-1]


def echo(request: ResponseRequest) -> list:
    return [OutputText(f"You said {last_user_text(request)}"), AUDIO]


def semantic(client: Client, eagerness: str = "auto") -> None:
    client.send({"type": "session.update", "session": {"type": "realtime", "audio": {"input": {
        "turn_detection": {"type": "semantic_vad", "eagerness": eagerness},
        "transcription": {"model": "whisper-1"}}}}})


async def settle() -> None:
    """Let the session's guess / transcription tasks run."""
    for _ in range(5):
        await asyncio.sleep(0.02)


def test_fragments_read_unfinished() -> None:
    for fragment in ("turn on the", "Set a timer for", "Set the living room lamp to", "Turn off the lights in the",
                     "Turn on the kitchen light and", "um", "", "Turn on the light,"):
        assert reads_unfinished(fragment), fragment
        assert not TurnGuess(fragment, "HassTurnOn").complete, fragment
    for whole in ("Turn on the kitchen light.", "What time is it?", "turn off the porch light"):
        assert not reads_unfinished(whole) and TurnGuess(whole, "HassTurnOn").complete
    assert not TurnGuess("Turn on the kitchen light.", None).complete  # no intent: not the fast path's call
    assert sounds_complete("Turn on the light.") and not sounds_complete("Turn on the")
    assert same_words("Turn on the kitchen light.", "turn on the Kitchen light") and not same_words("a b", "a")


async def test_a_matched_request_ends_the_turn_at_the_quick_silence() -> None:
    engine = ScriptedEngine(transcript="Turn on the kitchen light.", transcribe_delay=0.3, reply=echo,
                            guesses=[TurnGuess("Turn on the kitchen light.", "HassTurnOn")])
    client = Client(engine)
    semantic(client)
    client.append(tone(500) + silence(100))  # 100 ms: the guess starts (64 ms), not yet its 150 ms
    await settle()
    assert not client.sink.of_type("input_audio_buffer.speech_stopped")
    client.append(silence(100))
    stopped = await client.sink.wait_for("input_audio_buffer.speech_stopped")
    assert stopped["audio_end_ms"] <= 500 + 250  # the full transcript (0.3 s away) was not waited for
    done = await client.sink.wait_for("response.done")
    # the reply prepared from the fast transcript was used; the item's transcript is the full one
    assert client.session.responses.speculation_counts["used"] == 1
    assert done["response"]["output"][0]["content"][0]["transcript"] == "You said Turn on the kitchen light."
    completed = client.sink.of_type("conversation.item.input_audio_transcription.completed")
    assert [c["transcript"] for c in completed] == ["Turn on the kitchen light."]
    client.validate_all()


async def test_fragments_with_a_pause_do_not_end_the_turn() -> None:
    # "turn on the … kitchen light": the fast judge sees a fragment (even one it wrongly
    # matched), the full transcript trails off; only the whole request ends the turn.
    engine = ScriptedEngine(transcript="Turn on the", reply=echo, guesses=[
        TurnGuess("Turn on the", "HassTurnOn"), TurnGuess("Turn on the kitchen light.", "HassTurnOn")])
    client = Client(engine)
    semantic(client)
    client.append(tone(400) + silence(100))
    await settle()
    client.append(silence(900))  # a long mid-sentence pause: 1 s in all
    await settle()
    assert not client.sink.of_type("input_audio_buffer.speech_stopped")
    assert not client.sink.of_type("response.created")
    engine.transcript = "Turn on the kitchen light."
    client.append(tone(400) + silence(100))
    await settle()
    client.append(silence(100))
    stopped = await client.sink.wait_for("input_audio_buffer.speech_stopped")
    assert stopped["audio_end_ms"] >= 400 + 1000 + 400
    assert len(client.sink.of_type("input_audio_buffer.speech_started")) == 1  # one turn, not two
    done = await client.sink.wait_for("response.done")
    assert done["response"]["output"][0]["content"][0]["transcript"] == "You said Turn on the kitchen light."


async def test_set_a_timer_for_is_not_cut() -> None:
    engine = ScriptedEngine(transcript="Set a timer for", guesses=[TurnGuess("Set a timer for", None)])
    client = Client(engine)
    semantic(client, "high")
    client.append(tone(400) + silence(100))
    await settle()
    client.append(silence(1000))
    await settle()
    assert not client.sink.of_type("input_audio_buffer.speech_stopped")
    assert engine.guessed, "the fast judge was asked"


async def test_speculative_reply_is_dropped_when_the_user_goes_on() -> None:
    engine = ScriptedEngine(transcript="Turn on the", reply=echo)
    client = Client(engine)  # server_vad, 500 ms
    client.append(tone(400) + silence(200))
    await settle()
    responses = client.session.responses
    assert responses.held is not None and responses.held.text == "Turn on the"
    assert [last_user_text(r) for r in engine.requests] == ["Turn on the"]  # prepared while silent
    assert not client.sink.of_type("response.created")  # and nothing of it was sent
    engine.transcript = "Turn on the kitchen light."
    client.append(tone(400))  # the user goes on
    assert responses.held is None and responses.speculation_counts["dropped"] >= 1
    client.append(silence(700))
    done = await client.sink.wait_for("response.done")
    assert done["response"]["output"][0]["content"][0]["transcript"] == "You said Turn on the kitchen light."
    assert not any("You said Turn on the" == e.get("delta") for e in client.sink.of_type("response.output_audio_transcript.delta"))
    client.validate_all()


async def test_held_reply_is_sent_at_the_commit_in_server_vad() -> None:
    engine = ScriptedEngine(transcript="What time is it?", reply=echo)
    client = Client(engine)
    client.append(tone(400) + silence(200))
    await settle()
    assert len(engine.requests) == 1
    client.append(silence(400))
    done = await client.sink.wait_for("response.done")
    assert len(engine.requests) == 1, "the held reply was replayed, not asked again"
    assert client.session.responses.speculation_counts["used"] == 1
    assert done["response"]["output"][0]["content"][0]["transcript"] == "You said What time is it?"
    client.validate_all()


async def test_a_held_call_waits_for_the_full_transcript_which_wins() -> None:
    def call(request: ResponseRequest) -> list:
        return [function_call("HassTurnOn", json.dumps({"said": last_user_text(request)}))]

    # the fast transcript misheard the command; the full one (later) says other words
    engine = ScriptedEngine(transcript="Turn on the porch light.", transcribe_delay=0.3, reply=call,
                            guesses=[TurnGuess("Turn on the port slide.", "HassTurnOn")])
    client = Client(engine)
    semantic(client)
    client.append(tone(500) + silence(100))
    await settle()
    client.append(silence(100))
    await client.sink.wait_for("input_audio_buffer.speech_stopped")
    done = await client.sink.wait_for("response.done")
    [item] = done["response"]["output"]
    assert item["type"] == "function_call"
    assert json.loads(item["arguments"]) == {"said": "Turn on the porch light."}
    calls = client.sink.of_type("response.function_call_arguments.done")
    assert len(calls) == 1  # the misheard call never went out
    completed = client.sink.wait_for("conversation.item.input_audio_transcription.completed")
    assert (await completed)["transcript"] == "Turn on the porch light."


async def test_a_held_reply_that_says_the_same_is_not_said_twice() -> None:
    def ack_then_call(request: ResponseRequest) -> list:
        return [OutputText("Okay."), AUDIO, function_call("HassTurnOn", json.dumps({"said": last_user_text(request)}))]

    engine = ScriptedEngine(transcript="Turn on the porch light.", transcribe_delay=0.3, reply=ack_then_call,
                            guesses=[TurnGuess("Turn on the port slide.", "HassTurnOn")])
    client = Client(engine)
    semantic(client)
    client.append(tone(500) + silence(100))
    await settle()
    client.append(silence(100))
    done = await client.sink.wait_for("response.done")
    message, call = done["response"]["output"]
    assert message["content"][0]["transcript"] == "Okay."  # said once, before the full transcript
    assert json.loads(call["arguments"]) == {"said": "Turn on the porch light."}
    assert len(engine.requests) == 2  # the held reply, then the full transcript's


async def test_a_rejected_held_reply_goes_on_with_the_full_transcripts_words() -> None:
    def reply(request: ResponseRequest) -> list:
        if "porridge" in last_user_text(request):
            return [OutputText("Okay."), AUDIO, OutputText("Sorry, I didn't catch that."), AUDIO]
        return [OutputText("Okay."), AUDIO, function_call("HassTurnOff", "{}")]

    engine = ScriptedEngine(transcript="Turn off the porridge light.", transcribe_delay=0.3, reply=reply,
                            guesses=[TurnGuess("Turn off the porch light.", "HassTurnOff")])
    client = Client(engine)
    semantic(client)
    client.append(tone(500) + silence(100))
    await settle()
    client.append(silence(100))
    done = await client.sink.wait_for("response.done")
    [message] = done["response"]["output"]  # no call went out
    assert message["content"][0]["transcript"] == "Okay. Sorry, I didn't catch that."


async def test_clear_drops_the_held_reply() -> None:
    engine = ScriptedEngine(transcript="hello")
    client = Client(engine)
    client.append(tone(400) + silence(200))
    await settle()
    assert client.session.responses.held is not None
    client.send({"type": "input_audio_buffer.clear"})
    assert client.session.responses.held is None
    await asyncio.sleep(0.7)
    assert not client.sink.of_type("response.created")


async def test_an_unpunctuated_full_transcript_that_matches_an_intent_ends_the_turn() -> None:
    # the fast transcript missed; the full one has no final period (espeak voices), but is a request
    engine = ScriptedEngine(transcript="turn on the kitchen light", reply=echo,
                            guesses=[TurnGuess("turn on the kitten lie", None)],
                            intents={"turn on the kitchen light": "HassTurnOn", "turn on the": "HassTurnOn"})
    client = Client(engine)
    semantic(client)
    client.append(tone(500) + silence(100))
    await settle()
    client.append(silence(400))
    stopped = await client.sink.wait_for("input_audio_buffer.speech_stopped")
    assert stopped["audio_end_ms"] <= 500 + 600  # not the 4 s cap

    fragment = ScriptedEngine(transcript="turn on the", guesses=[TurnGuess("turn on the", None)],
                              intents={"turn on the": "HassTurnOn"})
    client = Client(fragment)
    semantic(client)
    client.append(tone(500) + silence(100))
    await settle()
    client.append(silence(900))
    await settle()
    assert not client.sink.of_type("input_audio_buffer.speech_stopped")
