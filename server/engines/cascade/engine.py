"""The local cascade engine: server VAD -> Whisper -> brain -> sentence-chunked piper.

The engine holds the shared models; `open()` gives each conversation a
`CascadeSession` with its own VAD state. Transcription and speech share the
engine's workers.

`respond` runs two explicit stages with one owner for cancellation (the
`respond` generator itself):

* the *thinking* task iterates the brain and splits its text into sentences,
  putting sentences and function calls on a queue; it never waits for speech,
  so the brain keeps streaming while sentence 1 is being spoken;
* the generator takes items off the queue in order and, for each sentence,
  yields its text and then the audio piper makes for it.

Closing the generator or cancelling the task that iterates it cancels the
thinking task (and so the brain's stream) and stops piper after the sentence
in progress; `respond` returns only once both have let go.

Latency: when the brain's answer starts with a function call (a device command),
the reply first says `acknowledge` ("Okay."), a short piece piper replays from its cache,
so the user hears within milliseconds that the command was understood. Each session
also gets `end_of_turn`, the fast judge the session's staged end of turn asks
(short-window Whisper + the intents matcher, `fast_stt.py`), when the brain has an
intents matcher.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from hearth.server.session.interfaces import (
    Declined,
    EngineSessionInfo,
    OutputAudio,
    OutputFunctionCall,
    OutputFunctionCallDelta,
    OutputText,
    OutputUsage,
    ResponseChunk,
    ResponseRequest,
    PIPELINE_RATE,
    Transcript,
    TranscriptionRequest,
)

from .brain import Brain
from .fast_stt import FastTranscriber, QuickTurnJudge, intent_matcher
from .sentences import SentenceSplitter, is_speakable
from .stt import WhisperTranscriber
from .tts import PiperSynthesizer
from .vad import SileroVad

_LOGGER = logging.getLogger(__name__)

#: Stage names passed to `on_mark`, each at most once per response.
MARK_BRAIN_FIRST = "brain_first_output"  # first text delta or function call from the brain
MARK_FIRST_SENTENCE = "first_sentence"  # first sentence complete, handed to TTS
MARK_FIRST_AUDIO = "tts_first_audio"  # first audio chunk yielded
MARK_BRAIN_DONE = "brain_done"  # the brain's stream ended
MARK_ACK = "acknowledged"  # the cached acknowledgement was yielded
MARK_DONE = "done"  # everything yielded

#: Receives (stage name, `time.monotonic()` when the stage was reached), the
#: convention of `EngineSession.respond` and the session's turn timings.
MarkCallback = Callable[[str, float], None]

T = TypeVar("T")


class CascadeSession:
    """One conversation on the cascade: its own VAD state, the engine's models.

    A brain with `for_satellite(satellite_id)` (the auto brain) gives a satellite's
    sessions the brain configured for that satellite.
    """

    def __init__(self, engine: CascadeEngine, info: EngineSessionInfo) -> None:
        self.info = info
        self.vad = engine.new_vad()
        self.transcriber = engine
        self.listener = None
        self.end_of_turn = engine.turn_judge
        self._engine = engine
        choose = getattr(engine.brain, "for_satellite", None)
        self.brain: Brain = choose(info.satellite_id) if choose is not None else engine.brain
        #: Satellites always hear the acknowledgement; Realtime clients where configured
        #: (they then see an assistant message before the call).
        self._acknowledge = engine.acknowledge_for(info)

    def respond(self, request: ResponseRequest, *, on_mark: MarkCallback | None = None
                ) -> AsyncIterator[ResponseChunk]:
        return self._engine.respond(request, on_mark=on_mark, brain=self.brain, acknowledge=self._acknowledge)

    def close(self) -> None:
        self.vad.reset()


class CascadeEngine:
    """A `SpeechEngine` made of local models and a pluggable brain."""

    def __init__(
        self,
        brain: Brain,
        transcriber: WhisperTranscriber,
        synthesizer: PiperSynthesizer,
        vad_model_path: str | Path | None = None,
        *,
        acknowledge: str | None = "Okay.",
        acknowledge_realtime: bool = False,
        quick_turn_end: bool = True,
    ) -> None:
        """Receives built stages; the composition root decides models and executors."""
        self.brain = brain
        self._transcriber = transcriber
        self._synthesizer = synthesizer
        self._vad_model_path = vad_model_path
        self._acknowledge = acknowledge.strip() if acknowledge else None
        self._acknowledge_realtime = acknowledge_realtime
        matcher = intent_matcher(brain) if quick_turn_end else None
        #: The staged end of turn's fast judge (None: no intents matcher to judge with).
        self.turn_judge = QuickTurnJudge(FastTranscriber(transcriber), matcher) if matcher is not None else None

    def acknowledge_for(self, info: EngineSessionInfo) -> str | None:
        """The acknowledgement a session's device commands start with, if any."""
        if info.satellite_id is not None or self._acknowledge_realtime:
            return self._acknowledge
        return None

    def new_vad(self) -> SileroVad:
        """A fresh Silero VAD state for one session (the model itself is shared)."""
        return SileroVad(self._vad_model_path)

    async def transcribe(self, request: TranscriptionRequest) -> Transcript:
        """Whisper, off the event loop."""
        return await self._transcriber.transcribe(request)

    async def warm_up(self) -> None:
        """Load the VAD, Whisper and piper models and run each once (call at server start)."""
        self.new_vad()
        await asyncio.gather(self._transcriber.warm_up(), self._synthesizer.warm_up())
        if self._acknowledge:  # a short piece: cached from now on, so the first command's is instant
            async for _ in self._synthesizer.synthesize(self._acknowledge, ""):
                pass
        if self.turn_judge is not None:
            await self.turn_judge.guess(np.zeros(PIPELINE_RATE, dtype=np.float32), tools=[], instructions="")

    def open(self, info: EngineSessionInfo) -> CascadeSession:
        return CascadeSession(self, info)

    async def close(self) -> None:
        """Close the brain's connections (an LLM's HTTP pool); the composition root owns the workers."""
        close = getattr(self.brain, "close", None)
        if close is not None:
            await close()

    async def respond(
        self, request: ResponseRequest, *, on_mark: MarkCallback | None = None, brain: Brain | None = None,
        acknowledge: str | None = None,
    ) -> AsyncIterator[ResponseChunk]:
        """Stream the reply: per sentence its text, then its audio; calls pass through.

        With ["text"] modalities the brain's deltas pass through unchanged. The
        OutputText pieces join to exactly the brain's text, with the acknowledgement
        first when spoken replies start with a call. `on_mark`, if
        given, is called once per MARK_* stage with its `time.monotonic()`
        timestamp, for benchmarks and logs. `brain` replaces the engine's brain (a
        session's own).
        """
        marks = _Marks(on_mark)
        thinker = brain or self.brain
        if "audio" in request.output_modalities:
            stream = self._spoken(request, marks, thinker, acknowledge)
        else:
            stream = self._written(request, marks, thinker)
        async with _closing(stream):
            async for chunk in stream:
                yield chunk
        marks.once(MARK_DONE)

    async def _brain_events(self, request: ResponseRequest, brain: Brain
                            ) -> AsyncIterator[OutputText | OutputFunctionCallDelta | OutputFunctionCall | OutputUsage]:
        """The brain's stream, with a decline spoken as its reply and `say` spoken as given."""
        if request.say is not None:
            yield OutputText(request.say)
            return
        events = brain.respond(request)
        async with _closing(events):
            async for event in events:
                if isinstance(event, Declined):
                    _LOGGER.info("brain declined: %s", event.reason)
                    yield OutputText(event.reply)
                    return
                yield event

    async def _written(self, request: ResponseRequest, marks: _Marks, brain: Brain) -> AsyncIterator[ResponseChunk]:
        events = self._brain_events(request, brain)
        async with _closing(events):
            async for event in events:
                marks.once(MARK_BRAIN_FIRST)
                yield event
        marks.once(MARK_BRAIN_DONE)

    async def _spoken(self, request: ResponseRequest, marks: _Marks, brain: Brain, acknowledge: str | None = None
                      ) -> AsyncIterator[ResponseChunk]:
        queue: asyncio.Queue[_Queued] = asyncio.Queue()
        thinking = asyncio.create_task(self._think(request, queue, marks, brain, acknowledge), name="cascade-brain")
        try:
            while True:
                item = await queue.get()
                if isinstance(item, _BrainEnd):
                    if item.error is not None:
                        raise item.error
                    return
                if isinstance(item, OutputFunctionCallDelta | OutputFunctionCall | OutputUsage):
                    yield item
                    continue
                text = item.text if isinstance(item, _Ack) else item
                yield OutputText(delta=text)
                if is_speakable(text):
                    speech = self._speak(text, request)
                    async with _closing(speech):
                        async for audio in speech:
                            marks.once(MARK_FIRST_AUDIO)
                            yield audio
                if isinstance(item, _Ack):
                    marks.once(MARK_ACK)
        finally:
            thinking.cancel()
            await asyncio.wait([thinking])

    async def _think(
        self,
        request: ResponseRequest,
        queue: asyncio.Queue[_Queued],
        marks: _Marks,
        brain: Brain,
        acknowledge: str | None = None,
    ) -> None:
        """Thinking stage: brain events -> sentences and calls on `queue`, then an end marker.

        Measured usage goes out after the text it counts; text a failing brain streamed
        before its error (its apology) is spoken before the error ends the response.
        """
        splitter = SentenceSplitter()
        usage: list[OutputUsage] = []
        spoken = False
        try:
            events = self._brain_events(request, brain)
            async with _closing(events):
                async for event in events:
                    marks.once(MARK_BRAIN_FIRST)
                    if not spoken and isinstance(event, OutputFunctionCall | OutputFunctionCallDelta) and acknowledge:
                        queue.put_nowait(_Ack(acknowledge))
                    spoken = True
                    if isinstance(event, OutputText):
                        for sentence in splitter.feed(event.delta):
                            marks.once(MARK_FIRST_SENTENCE)
                            queue.put_nowait(sentence)
                    elif isinstance(event, OutputUsage):
                        usage.append(event)
                    else:
                        # Text before a call is spoken before the call (its first piece) goes out.
                        for sentence in splitter.flush():
                            marks.once(MARK_FIRST_SENTENCE)
                            queue.put_nowait(sentence)
                        queue.put_nowait(event)
            for sentence in splitter.flush():
                marks.once(MARK_FIRST_SENTENCE)
                queue.put_nowait(sentence)
            for measured in usage:
                queue.put_nowait(measured)
            marks.once(MARK_BRAIN_DONE)
        except Exception as exc:  # re-raised by the consuming side
            for sentence in splitter.flush():
                queue.put_nowait(sentence)
            queue.put_nowait(_BrainEnd(exc))
        else:
            queue.put_nowait(_BrainEnd(None))

    async def _speak(self, sentence: str, request: ResponseRequest) -> AsyncIterator[OutputAudio]:
        rate = self._synthesizer.sample_rate_for(request.voice)
        audio = self._synthesizer.synthesize(sentence.strip(), request.voice, request.speed)
        async with _closing(audio):
            async for pcm in audio:
                yield OutputAudio(pcm=pcm, rate=rate)


@dataclass(frozen=True)
class _Ack:
    """The acknowledgement said before a leading function call."""

    text: str


@dataclass(frozen=True)
class _BrainEnd:
    error: Exception | None


#: What the thinking stage hands the speaking stage: a sentence, a call (or a piece of one), usage, the end.
_Queued = str | _Ack | OutputFunctionCallDelta | OutputFunctionCall | OutputUsage | _BrainEnd


class _Marks:
    """Calls the `on_mark` callback once per stage name with a monotonic timestamp."""

    def __init__(self, callback: MarkCallback | None) -> None:
        self._callback = callback
        self._seen: set[str] = set()

    def once(self, name: str) -> None:
        if self._callback is None or name in self._seen:
            return
        self._seen.add(name)
        try:
            self._callback(name, time.monotonic())
        except Exception:  # a broken timing hook must not break the reply
            _LOGGER.exception("on_mark callback failed for %s", name)


@contextlib.asynccontextmanager
async def _closing(stream: AsyncIterator[T]) -> AsyncIterator[AsyncIterator[T]]:
    """Close an async generator when leaving the block, even on cancellation.

    `async for` does not close the generator it iterates when the loop body is
    interrupted; without this, a closed response would leave its inner streams
    (and their worker threads) to the garbage collector.
    """
    try:
        yield stream
    finally:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()
