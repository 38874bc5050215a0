"""CascadeEngine with a scripted brain and the real Whisper, piper and Silero models."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence

import numpy as np
import pytest

from hearth.server.engines.cascade.brain import BrainEvent
from hearth.server.engines.cascade.engine import (
    MARK_BRAIN_DONE,
    MARK_BRAIN_FIRST,
    MARK_DONE,
    MARK_FIRST_AUDIO,
    MARK_FIRST_SENTENCE,
    CascadeEngine,
)
from hearth.server.engines.cascade.stt import WhisperTranscriber
from hearth.server.engines.cascade.tts import PiperSynthesizer
from hearth.server.engines.cascade.vad import SileroVad
from hearth.server.session.interfaces import (
    Declined,
    EngineSessionInfo,
    OutputAudio,
    OutputFunctionCall,
    OutputText,
    OutputUsage,
    ResponseChunk,
    ResponseRequest,
    TranscriptionRequest,
)

Step = BrainEvent | float | asyncio.Event


class ScriptedBrain:
    """Plays a script: events are yielded, floats are sleeps, events are waited for."""

    def __init__(self, script: Sequence[Step], *, then_hang: bool = False, error: Exception | None = None) -> None:
        self.script = script
        self.then_hang = then_hang
        self.error = error
        self.closed = asyncio.Event()

    async def respond(self, request: ResponseRequest) -> AsyncIterator[BrainEvent]:
        try:
            for step in self.script:
                if isinstance(step, float):
                    await asyncio.sleep(step)
                elif isinstance(step, asyncio.Event):
                    await step.wait()
                else:
                    yield step
            if self.error is not None:
                raise self.error
            if self.then_hang:
                await asyncio.Event().wait()
        finally:
            self.closed.set()


def deltas(text: str, size: int = 5) -> list[BrainEvent]:
    return [OutputText(text[i : i + size]) for i in range(0, len(text), size)]


def request(*modalities: str) -> ResponseRequest:
    return ResponseRequest(
        instructions="", items=[], tools=[], tool_choice="auto",
        output_modalities=list(modalities or ("audio",)), voice="alloy", speed=1.0,
    )


def engine(brain: ScriptedBrain, transcriber: WhisperTranscriber, synthesizer: PiperSynthesizer) -> CascadeEngine:
    return CascadeEngine(brain, transcriber, synthesizer)


def shape(chunks: list[ResponseChunk]) -> str:
    """T for text, A for a run of audio chunks, F for a function call."""
    out = ""
    for chunk in chunks:
        letter = {OutputText: "T", OutputAudio: "A", OutputFunctionCall: "F", OutputUsage: "U"}[type(chunk)]
        if not (letter == "A" and out.endswith("A")):
            out += letter
    return out


def cascade_tasks() -> list[asyncio.Task]:
    return [t for t in asyncio.all_tasks() if t.get_name() == "cascade-brain" and not t.done()]


async def test_each_sentence_is_its_text_then_its_audio(transcriber, synthesizer) -> None:
    text = "Sure thing. The kitchen light is on. Anything else?"
    cascade = engine(ScriptedBrain(deltas(text)), transcriber, synthesizer)
    chunks = [c async for c in cascade.respond(request("audio"))]
    assert shape(chunks) == "TATATA"
    assert "".join(c.delta for c in chunks if isinstance(c, OutputText)) == text
    audio = [c for c in chunks if isinstance(c, OutputAudio)]
    assert all(c.rate == 22050 and c.pcm.dtype == np.int16 for c in audio)


async def test_text_only_passes_the_brains_deltas_through(transcriber, synthesizer) -> None:
    script = deltas("Sure thing. The light is on.", 3)
    chunks = [c async for c in engine(ScriptedBrain(script), transcriber, synthesizer).respond(request("text"))]
    assert chunks == script


async def test_function_calls_keep_their_place(transcriber, synthesizer) -> None:
    call = OutputFunctionCall(name="HassTurnOn", arguments='{"name": "kitchen light"}')
    script = [*deltas("Turning it on"), call, OutputText("Done.")]
    chunks = [c async for c in engine(ScriptedBrain(script), transcriber, synthesizer).respond(request("audio"))]
    assert shape(chunks) == "TAFTA"
    assert chunks[[type(c) for c in chunks].index(OutputFunctionCall)] == call


async def test_speech_starts_while_the_brain_is_still_writing(transcriber, synthesizer) -> None:
    released = asyncio.Event()
    script = [OutputText("First sentence is here. "), OutputText("Second"), released, OutputText(" one.")]
    cascade = engine(ScriptedBrain(script), transcriber, synthesizer)
    chunks: list[ResponseChunk] = []

    async def consume() -> None:
        async for chunk in cascade.respond(request("audio")):
            if isinstance(chunk, OutputAudio):
                released.set()  # the brain may only finish once audio has come out
            chunks.append(chunk)

    await asyncio.wait_for(consume(), timeout=10)
    assert shape(chunks) == "TATA"


async def test_brain_is_not_held_up_by_speech_and_marks_are_reported(transcriber, synthesizer) -> None:
    text = " ".join(f"Sentence {n} of the reply." for n in range(1, 5))
    marks: dict[str, float] = {}
    before = time.monotonic()
    cascade = engine(ScriptedBrain(deltas(text)), transcriber, synthesizer)
    chunks = [c async for c in cascade.respond(request("audio"), on_mark=marks.setdefault)]
    assert shape(chunks) == "TA" * 4
    assert set(marks) == {MARK_BRAIN_FIRST, MARK_FIRST_SENTENCE, MARK_BRAIN_DONE, MARK_FIRST_AUDIO, MARK_DONE}
    assert before <= marks[MARK_BRAIN_FIRST] <= marks[MARK_FIRST_SENTENCE] <= marks[MARK_FIRST_AUDIO]
    # The whole reply was written before the first sentence had been spoken.
    assert marks[MARK_BRAIN_DONE] < marks[MARK_FIRST_AUDIO] <= marks[MARK_DONE] <= time.monotonic()


async def test_cancelling_the_consumer_stops_brain_and_speech(transcriber, synthesizer) -> None:
    brain = ScriptedBrain(deltas("Here is a first sentence. And a second one"), then_hang=True)
    cascade = engine(brain, transcriber, synthesizer)
    heard = asyncio.Event()

    async def consume() -> None:
        async for chunk in cascade.respond(request("audio")):
            if isinstance(chunk, OutputAudio):
                heard.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(heard.wait(), timeout=10)
    task.cancel()
    # The brain hangs after its first sentence: the cancel must reach it (10 s only bounds a hang).
    done, _ = await asyncio.wait([task], timeout=10)
    assert done, "the cancelled reply did not let go of its brain"
    with pytest.raises(asyncio.CancelledError):
        task.result()
    assert brain.closed.is_set()
    assert cascade_tasks() == []
    assert synthesizer.active_streams == 0


async def test_closing_mid_reply_stops_promptly(transcriber, synthesizer, piper_runs) -> None:
    text = " ".join(f"This is sentence number {n} of a long reply." for n in range(1, 11))
    brain = ScriptedBrain([OutputText(text)])
    stream = engine(brain, transcriber, synthesizer).respond(request("audio"))
    while not isinstance(await anext(stream), OutputAudio):
        pass
    await asyncio.wait_for(stream.aclose(), 10)  # bounds a hang only
    # Promptly = piper stops: at most the sentence in progress after the one heard, not all ten.
    assert piper_runs.runs <= 2, f"{piper_runs.runs} of 10 sentences synthesized after the close"
    assert brain.closed.is_set()
    assert cascade_tasks() == []
    assert synthesizer.active_streams == 0


async def test_text_before_a_failure_is_spoken_whole(transcriber, synthesizer) -> None:
    # An apology without a trailing space is still a sentence once the brain has failed.
    brain = ScriptedBrain([OutputText("Sorry, the model is busy.")], error=RuntimeError("upstream 429"))
    chunks: list[ResponseChunk] = []
    with pytest.raises(RuntimeError, match="upstream 429"):
        async for chunk in engine(brain, transcriber, synthesizer).respond(request("audio")):
            chunks.append(chunk)
    assert shape(chunks) == "TA"


async def test_measured_usage_goes_out_after_the_text(transcriber, synthesizer) -> None:
    usage = OutputUsage(input_tokens=3, output_tokens=4)
    brain = ScriptedBrain([OutputText("Here it "), usage, OutputText("is.")])
    chunks = [c async for c in engine(brain, transcriber, synthesizer).respond(request("audio"))]
    assert shape(chunks) == "TAU" and chunks[-1] == usage
    written = [c async for c in engine(ScriptedBrain([OutputText("Hi."), usage]), transcriber, synthesizer)
               .respond(request("text"))]
    assert written == [OutputText("Hi."), usage]


async def test_brain_failure_ends_the_response_with_its_error(transcriber, synthesizer) -> None:
    brain = ScriptedBrain(deltas("One sentence. "), error=RuntimeError("brain exploded"))
    chunks: list[ResponseChunk] = []
    with pytest.raises(RuntimeError, match="brain exploded"):
        async for chunk in engine(brain, transcriber, synthesizer).respond(request("audio")):
            chunks.append(chunk)
    assert isinstance(chunks[0], OutputText)
    assert cascade_tasks() == []


async def test_warm_up_vad_and_transcription(transcriber, synthesizer, kitchen_light) -> None:
    cascade = engine(ScriptedBrain([]), transcriber, synthesizer)
    await cascade.warm_up()
    one, two = cascade.open(EngineSessionInfo("sess_a")), cascade.open(EngineSessionInfo("sess_b"))
    assert one.transcriber is not None  # the cascade needs transcripts: it provides transcription
    first, second = one.vad, two.vad
    assert isinstance(first, SileroVad) and first is not second
    transcript = await cascade.transcribe(TranscriptionRequest(audio=kitchen_light))
    assert "kitchen light" in transcript.text.lower()


async def test_a_declining_brain_has_its_reply_spoken(transcriber, synthesizer) -> None:
    """A decline reaching the engine is spoken as its reply: text, then audio; nothing after it."""
    brain = ScriptedBrain([Declined("no intent matched", "Sorry, I didn't catch that."), OutputText("never")])
    session = engine(brain, transcriber, synthesizer).open(EngineSessionInfo("sess_decline"))
    chunks = [c async for c in session.respond(request("audio"))]
    assert shape(chunks) == "TA"
    assert "".join(c.delta for c in chunks if isinstance(c, OutputText)) == "Sorry, I didn't catch that."


async def test_say_speaks_the_given_line_without_the_brain(transcriber, synthesizer) -> None:
    brain = ScriptedBrain(deltas("The brain would say this."))
    base = request("audio")
    say = ResponseRequest(**{**base.__dict__, "say": "Sorry, that took too long."})
    chunks = [c async for c in engine(brain, transcriber, synthesizer).respond(say)]
    assert "".join(c.delta for c in chunks if isinstance(c, OutputText)) == "Sorry, that took too long."
    assert any(isinstance(c, OutputAudio) for c in chunks)
    assert not brain.closed.is_set(), "the brain was never asked"
