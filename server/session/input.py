"""A session's input side: the audio buffer, turn detection, speculative STT and commits.

Audio arrives at any rate (`append`); it is kept as sent (for retrieve) and resampled
once to the 16 kHz pipeline rate for the VAD and speech-to-text. The turn detector's
signals become `input_audio_buffer.*` events; a turn that ends (VAD, semantic end,
end of input, or a manual commit) becomes a committed user item whose transcription
runs in a task the session owns. The session is told through two callbacks: speech
started (barge-in) and turn committed (answer it). An engine that hears the audio itself
(a `Listener`, the relay) detects the turns instead: see `engine_input.py`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..audio.resample import StreamResampler
from ..protocol import server_events as ev
from ..protocol.errors import RealtimeProtocolError
from ..protocol.ids import new_id
from ..protocol.session_config import SemanticVad, ServerVad
from .conversation import Conversation, Entry
from .end_of_turn import (
    QUICK_SILENCE_MS,
    SEMANTIC_MAX_SILENCE,
    SEMANTIC_MIN_SILENCE,
    TurnEndModel,
    TurnGuess,
    reads_unfinished,
    sounds_complete,
)
from .engine_input import EngineInput
from .input_buffer import InputBuffer
from .interfaces import PIPELINE_RATE, Listener, Transcriber, Transcript, TranscriptionError, TranscriptionRequest
from .items import set_transcript, user_audio_item
from .limits import SessionLimits, duration_words
from .timings import TurnTimings
from .turn_detection import TurnDetector, TurnSignal, VadSettings

_LOGGER = logging.getLogger(__name__)

#: The shortest commit upstream accepts.
MIN_COMMIT_MS = 100
#: server_vad: shortest silence for which the fast guess runs beside the speculative
#: transcription (its held reply is ready by the commit); a shorter silence commits first.
GUESS_MIN_SILENCE_MS = 350
#: Longest a turn's full transcription waits for its held reply's first audio (s).
HOLD_STT_S = 1.0
#: In VAD mode, silence older than the prefix padding is dropped once the buffer exceeds this.
IDLE_TRIM_S = 2.0

def input_resampler(rate: int) -> StreamResampler:
    """Input audio to 16 kHz for VAD and STT.

    soxr's low-quality filter holds back ~6 ms of audio where HQ holds back ~21 ms,
    and every held-back millisecond delays the end of every turn. The speech band
    the VAD and Whisper use is far below where the filters differ.
    """
    return StreamResampler(rate, PIPELINE_RATE, quality="LQ")


@dataclass
class _Speculation:
    """A transcription started at the first silence, reused if the turn ends there."""

    start: int
    end: int
    task: asyncio.Task[Transcript]
    #: The intent the full transcript matches (asked when it is in; semantic_vad's second stage).
    intent: asyncio.Task[str | None] | None = None


@dataclass
class _Guess:
    """A fast transcript + intent match of the turn so far (the staged end of turn)."""

    start: int
    end: int
    task: asyncio.Task[TurnGuess]
    #: Whether its reply was asked for (once, whoever sees the result first).
    replied: bool = False


def _no_plan() -> Any:
    return None


@dataclass(frozen=True)
class InputHooks:
    """What the input side tells the session, and what it needs from it."""

    emit: Callable[[ev.ServerEvent], None]
    #: (coroutine, task name[, "live" | "bulk"]) -> a task the session owns.
    spawn: Callable[..., asyncio.Task[Any]]
    #: The live session config (changes with session.update).
    config: Callable[[], Any]
    #: Speech started in VAD mode: barge-in and idle-timer handling.
    speech_started: Callable[[], None]
    #: A VAD turn was committed (item id, the turn detection in force): answer it if asked to.
    turn_committed: Callable[[str, ServerVad | SemanticVad], None]
    #: Timings of the committed turn, handed to the response that answers it.
    turn_timings: Callable[[TurnTimings], None]
    #: The plan of the reply a committed turn would get now (its tools and instructions
    #: feed the intent match); None when no reply would start.
    reply_plan: Callable[[], Any] = _no_plan
    #: A trusted transcript of the turn so far exists: reply to it speculatively (item id, text).
    speculate: Callable[[str, str], None] = lambda _item, _text: None
    #: The user went on (or the buffer was cleared): drop the speculative reply.
    drop_speculation: Callable[[], None] = lambda: None
    #: Resolves once the speculative reply to the turn has its first audio or call (None: no such reply).
    reply_first_output: Callable[[], asyncio.Future[None] | None] = lambda: None


class InputStage:
    def __init__(self, hooks: InputHooks, conversation: Conversation, vad: Any, transcriber: Transcriber | None,
                 wire_rate: int, limits: SessionLimits | None = None, listener: Listener | None = None,
                 turn_end: TurnEndModel | None = None) -> None:
        self.hooks = hooks
        self.limits = limits or SessionLimits()
        #: 16 kHz audio waiting for its VAD scores (large appends are scored off the loop).
        self._backlog: deque[np.ndarray] = deque()
        self._scoring: asyncio.Task[None] | None = None
        self.conversation = conversation
        self.transcriber = transcriber
        self.buffer = InputBuffer(wire_rate)
        self._resampler = input_resampler(wire_rate)
        self._vad = vad
        self.detector = TurnDetector(vad, self.vad_settings()) if vad is not None else None
        self.speech_item: str | None = None
        self._speech_start = 0
        self._speculation: _Speculation | None = None
        #: The engine's fast end-of-turn judge (None: the silence and the full transcript decide).
        self.turn_end = turn_end
        self._guess: _Guess | None = None
        #: The full speculative transcription waiting for the fast guess to finish (start, end).
        self._deferred: tuple[int, int] | None = None
        self.transcripts: dict[str, asyncio.Task[Transcript | None]] = {}
        self._pending_timings: TurnTimings | None = None
        self._silence_began_at: float | None = None
        #: The engine's own turn detection, when it hears the audio itself.
        self.heard = EngineInput(self, listener) if listener is not None else None

    # ------------------------------------------------------------ config

    @property
    def _cfg(self) -> Any:
        return self.hooks.config().audio.input

    @property
    def _position(self) -> int:
        return self.detector.position if self.detector is not None else self.buffer.end

    def vad_settings(self) -> VadSettings:
        turn = self._cfg.turn_detection
        if isinstance(turn, ServerVad):
            return VadSettings(turn.threshold, turn.prefix_padding_ms, turn.silence_duration_ms)
        if isinstance(turn, SemanticVad):
            return VadSettings(0.5, 300, SEMANTIC_MAX_SILENCE[turn.eagerness])
        # manual turns: the VAD still runs to transcribe speculatively
        return VadSettings(0.5, 0, 300)

    def reconfigure(self, wire_rate: int) -> None:
        """Apply a session.update: a new input rate restarts the buffer."""
        if wire_rate != self.buffer.wire_rate:
            self.clear(silent=True)
            self.buffer = InputBuffer(wire_rate)
            self._resampler = input_resampler(wire_rate)
        if self.detector is not None:
            self.detector.configure(self.vad_settings())
        if self._cfg.turn_detection is None:
            self.speech_item = None
        if self.heard is not None:
            self.heard.configure()

    # ------------------------------------------------------------ audio

    def check_room(self) -> None:
        limit = self.limits.max_buffer_s
        if self.buffer.duration_ms / 1000 > limit:
            raise RealtimeProtocolError(
                message=f"The input audio buffer holds more than {duration_words(limit)}; commit or clear it.",
                code="input_audio_buffer_full")

    def append(self, pcm: np.ndarray, rate: int) -> None:
        """int16 mono audio at `rate`; one resample to the pipeline rate."""
        if rate != self.buffer.wire_rate:
            if self.buffer.duration_ms == 0:
                self.buffer = InputBuffer(rate)
                self._resampler = input_resampler(rate)
            else:  # a transport that changed its rate mid-buffer: keep one clock
                pcm = StreamResampler(rate, self.buffer.wire_rate).process(pcm, last=True)
        self._feed(pcm, self._resampler.process(pcm))

    def _feed(self, wire: np.ndarray, pcm: np.ndarray) -> None:
        pipe = pcm.astype(np.float32) / 32768.0
        self.buffer.append(wire, pipe)
        if self.heard is not None:
            self.heard.append(wire, self.buffer.wire_rate)
        if self.detector is None:
            return
        large = len(pipe) > self.limits.large_append_s * PIPELINE_RATE
        if large and self._cfg.turn_detection is None and not self._backlog:
            # manual turns use the VAD only to start STT early, which a bulk upload does not need
            self.detector.skip(len(pipe))
            return
        if large or self._backlog:
            self._backlog.append(pipe)
            if self._scoring is None or self._scoring.done():
                self._scoring = self.hooks.spawn(self._score_backlog(), "vad")
            return
        self._apply(self.detector.feed(pipe))

    def _apply(self, signals: list[TurnSignal]) -> None:
        for signal in signals:
            self._on_signal(signal)
        if self.speech_item is None and self._cfg.turn_detection is not None:
            self._trim_idle()
        self._check_semantic_end()

    async def _score_backlog(self) -> None:
        """Run the VAD over queued audio in a worker thread, in order; the state machine stays here."""
        detector = self.detector
        assert detector is not None
        while self._backlog:
            probabilities = await asyncio.to_thread(detector.score, self._backlog[0])
            self._backlog.popleft()
            self._apply(detector.apply(probabilities))

    def _flush_backlog(self) -> None:
        """Score what is queued now (the input ended): rare, and the turn's end depends on it."""
        if self._scoring is not None:
            self._scoring.cancel()
            self._scoring = None
        while self._backlog and self.detector is not None:
            self._apply(self.detector.feed(self._backlog.popleft()))

    def end(self) -> bool:
        """The input stream ended now: close a turn in progress at once (no silence to wait for).

        Returns True when a turn was committed.
        """
        self._flush_backlog()
        tail = self._resampler.process(np.zeros(0, dtype=np.int16), last=True)
        if len(tail):
            self.buffer.append(np.zeros(0, dtype=np.int16), tail.astype(np.float32) / 32768.0)
        turn = self._cfg.turn_detection
        if self.speech_item is None or turn is None:
            return False
        if self.detector is not None:
            self.detector.reset_turn()
        self._end_turn(self.buffer.end, turn)
        return True

    def _trim_idle(self) -> None:
        if self.buffer.duration_ms / 1000 > IDLE_TRIM_S and self.detector is not None:
            padding = self.detector.settings.prefix_padding_ms * PIPELINE_RATE // 1000
            self.buffer.drop_until(self.detector.position - padding)

    def _on_signal(self, signal: TurnSignal) -> None:
        vad = self._cfg.turn_detection
        match signal.kind:
            case "speech_started":
                self._cancel_speculation()
                self._cancel_guess()
                if vad is None:
                    return
                self.speech_item = new_id("item")
                self._speech_start = max(signal.sample, self.buffer.start)
                self.hooks.emit(ev.SpeechStarted(item_id=self.speech_item, audio_start_ms=_ms(self._speech_start)))
                self.hooks.speech_started()
            case "silence_began":
                self._silence_began_at = time.monotonic()
            case "silence_settled":
                start = self._speech_start if vad is not None and self.speech_item else self.buffer.start
                semantic = isinstance(vad, SemanticVad)
                guess = vad is not None and self.speech_item is not None and (
                    semantic or vad.silence_duration_ms >= GUESS_MIN_SILENCE_MS)
                if guess and self._start_guess(start, signal.sample):
                    if semantic:  # the guess may end the turn: alone on the CPU first (~80 ms)
                        self._deferred = (start, signal.sample)
                    else:  # the silence ends it: the full transcript must be ready by then
                        self._speculate(start, signal.sample)
                else:
                    self._speculate(start, signal.sample)
            case "speech_resumed":
                self._cancel_speculation()
                self._cancel_guess()
            case "turn_ended":
                if vad is None or self.speech_item is None:
                    return
                self._end_turn(signal.sample, vad)

    # ------------------------------------------------------------ speculation

    def _speculate(self, start: int, end: int, after: asyncio.Future[None] | None = None) -> None:
        self._cancel_speculation()
        if self.transcriber is None:
            return
        if end - max(start, self.buffer.start) > self.limits.max_speculation_s * PIPELINE_RATE:
            return  # longer than Whisper's window: transcribe once, at the commit
        _, audio = self.buffer.slice(start, end)
        if not len(audio):
            return
        timings = self._pending_timings = self._pending_timings or TurnTimings()
        timings.mark("silence_began", self._silence_began_at)
        task = self.hooks.spawn(self._transcribe(audio, timings, after), "speculative-stt")
        spec = self._speculation = _Speculation(start=start, end=end, task=task)
        task.add_done_callback(lambda _t: self._speculation_done(spec))

    def _cancel_speculation(self) -> None:
        if self._speculation is not None:
            self._speculation.task.cancel()
            if self._speculation.intent is not None:
                self._speculation.intent.cancel()
            self._speculation = None
            self._pending_timings = None
            self.hooks.drop_speculation()

    def _speculation_done(self, spec: _Speculation) -> None:
        """The full transcript of the turn so far is in: reply to it speculatively, maybe end the turn."""
        if self._speculation is not spec or spec.task.cancelled() or spec.task.exception() is not None:
            return
        if self.speech_item is not None and self._cfg.turn_detection is not None:
            text = spec.task.result().text
            if text.strip():
                self.hooks.speculate(self.speech_item, text)
            if (self.turn_end is not None and isinstance(self._cfg.turn_detection, SemanticVad) and text.strip()
                    and not sounds_complete(text)):
                # "turn on the kitchen light" without Whisper's period: a request all the same
                plan = self.hooks.reply_plan()
                tools = list(plan.tools) if plan is not None else []
                instructions = plan.instructions if plan is not None else ""
                spec.intent = self.hooks.spawn(self.turn_end.match(text, tools=tools, instructions=instructions),
                                               "turn-match")
                spec.intent.add_done_callback(lambda _t: self._check_semantic_end())
        self._check_semantic_end()

    # ------------------------------------------------------------ the staged end of turn

    def _start_guess(self, start: int, end: int) -> bool:
        """Ask the engine's fast judge about the turn so far (see end_of_turn.py); False: no judge asked."""
        self._cancel_guess()
        if self.turn_end is None or end - max(start, self.buffer.start) > self.limits.max_speculation_s * PIPELINE_RATE:
            return False
        _, audio = self.buffer.slice(start, end)
        if not len(audio):
            return False
        plan = self.hooks.reply_plan()
        tools = list(plan.tools) if plan is not None else []
        instructions = plan.instructions if plan is not None else ""
        self._cancel_speculation()
        timings = self._pending_timings = TurnTimings()
        timings.mark("silence_began", self._silence_began_at)
        turn_end = self.turn_end

        async def judge() -> TurnGuess:
            if timings is not None:
                timings.mark("quick_start")
            guess = await turn_end.guess(audio, tools=tools, instructions=instructions)
            if timings is not None:
                timings.mark("quick_done")
            return guess

        guess = self._guess = _Guess(start=start, end=end, task=self.hooks.spawn(judge(), "turn-guess"))
        guess.task.add_done_callback(lambda _t: self._guess_done(guess))
        return True

    def _cancel_guess(self) -> None:
        self._deferred = None
        if self._guess is not None:
            self._guess.task.cancel()
            self._guess = None

    def _start_deferred(self, committing: bool = False) -> None:
        """The guess is in (or failed, or the turn is being committed): now the full transcription.

        At a commit it still transcribes only up to where the silence began, the audio
        the guess heard (Whisper hears a turn with its trailing silence a little differently).
        """
        deferred, self._deferred = self._deferred, None
        if deferred is not None and (committing or self.speech_item is not None):
            self._speculate(*deferred, after=self.hooks.reply_first_output() if committing else None)

    def _guess_result(self) -> TurnGuess | None:
        guess = self._guess
        if guess is None or not guess.task.done() or guess.task.cancelled() or guess.task.exception() is not None:
            return None
        return guess.task.result()

    def _guess_done(self, guess: _Guess) -> None:
        if self._guess is not guess:
            return
        result = self._guess_result()
        if not (result is not None and result.complete and isinstance(self._cfg.turn_detection, SemanticVad)):
            self._start_deferred()
        # else the turn is about to end: the full transcription waits for the commit, and
        # there for the held reply's first audio (both on 2 cores, piper would wait for Whisper)
        if not guess.task.cancelled() and guess.task.exception() is not None:
            _LOGGER.warning("fast end-of-turn guess failed: %s", guess.task.exception())
            return
        if result is None or self.speech_item is None:
            return
        _LOGGER.debug("fast guess %r -> %s (complete: %s)", result.text, result.intent, result.complete)
        self._reply_to_guess(guess, result)
        self._check_semantic_end()

    def _reply_to_guess(self, guess: _Guess, result: TurnGuess) -> None:
        """A complete request on a rough transcript: its reply may be prepared, never acted on."""
        if guess.replied or not result.complete or self.speech_item is None:
            return
        guess.replied = True
        spec = self._speculation
        if spec is None or not spec.task.done():  # a finished full transcript already has its reply
            self.hooks.speculate(self.speech_item, result.text)

    async def _transcribe(self, audio: np.ndarray, timings: TurnTimings | None,
                          after: asyncio.Future[None] | None = None) -> Transcript:
        """`after`: start only once it resolves (at most HOLD_STT_S), so the reply's first audio goes first."""
        assert self.transcriber is not None
        if after is not None:
            try:
                await asyncio.wait_for(asyncio.shield(after), HOLD_STT_S)
            except TimeoutError:
                pass
        transcription = self._cfg.transcription
        request = TranscriptionRequest(
            audio=audio,
            language=transcription.language if transcription else None,
            prompt=transcription.prompt if transcription else None,
        )
        if timings:
            timings.mark("stt_start")
        result = await self.transcriber.transcribe(request)
        if timings:
            timings.mark("stt_done")
        return result

    def _check_semantic_end(self) -> None:
        """semantic_vad: end the turn early once the words so far are a complete request."""
        vad = self._cfg.turn_detection
        if not isinstance(vad, SemanticVad) or self.speech_item is None or self.detector is None:
            return
        guess, result = self._guess, self._guess_result()
        if guess is not None and result is not None and result.complete:
            silence_ms = (self.detector.position - guess.end) * 1000 / PIPELINE_RATE
            if silence_ms >= QUICK_SILENCE_MS[vad.eagerness]:
                self._reply_to_guess(guess, result)  # its done-callback may not have run yet
                if self._pending_timings is not None:
                    self._pending_timings.mark("quick_end")
                self.detector.reset_turn()
                self._end_turn(self.detector.position, vad)
                return
        spec = self._speculation
        if spec is None or not spec.task.done() or spec.task.cancelled() or spec.task.exception() is not None:
            return
        silence_ms = (self.detector.position - spec.end) * 1000 / PIPELINE_RATE
        if silence_ms < SEMANTIC_MIN_SILENCE[vad.eagerness]:
            return
        text = spec.task.result().text
        matched = (spec.intent is not None and spec.intent.done() and not spec.intent.cancelled()
                   and spec.intent.exception() is None and spec.intent.result() is not None
                   and not reads_unfinished(text))
        if sounds_complete(text) or matched:
            self.detector.reset_turn()
            self._end_turn(self.detector.position, vad)

    # ------------------------------------------------------------ commits

    def _end_turn(self, end: int, vad: ServerVad | SemanticVad) -> None:
        item_id = self.speech_item
        assert item_id is not None
        self.speech_item = None
        self.hooks.emit(ev.SpeechStopped(item_id=item_id, audio_end_ms=_ms(end)))
        self._commit(item_id, self._speech_start, end)
        self.hooks.turn_committed(item_id, vad)

    def commit_manual(self) -> str:
        buffered = self.buffer.wire_duration_ms
        if buffered < MIN_COMMIT_MS:
            raise RealtimeProtocolError(
                message=f"Error committing input audio buffer: buffer too small. Expected at least {MIN_COMMIT_MS}ms "
                f"of audio, but buffer only has {buffered:.2f}ms of audio.",
                code="input_audio_buffer_commit_empty")
        item_id = self.speech_item or new_id("item")
        self.speech_item = None
        start = self._speech_start if self._speech_start >= self.buffer.start else self.buffer.start
        self._commit(item_id, start, self.buffer.end)
        if self.detector is not None:
            self.detector.reset_turn()
        return item_id

    def commit_all(self) -> str:
        """Commit whatever is buffered (the idle timeout's commit)."""
        item_id = new_id("item")
        start, end = self.buffer.start, self.buffer.end
        self.hooks.emit(ev.BufferTimeoutTriggered(item_id=item_id, audio_start_ms=_ms(start), audio_end_ms=_ms(end)))
        self._commit(item_id, start, end)
        return item_id

    def commit_heard(self, item_id: str, start: int, end: int) -> None:
        """Commit a turn the engine's listener detected (it has the audio already)."""
        self._commit(item_id, start, end, by_engine=True)

    def _commit(self, item_id: str, start: int, end: int, *, by_engine: bool = False) -> None:
        self._start_deferred(committing=True)  # a guess still in flight: its transcription starts now
        if self.heard is not None and not by_engine:
            self.heard.listener.commit(item_id)
        wire, pipe = self.buffer.slice(start, end)
        wire = wire.copy()  # the item must not keep the buffer's joined array alive
        self.buffer.drop_until(end)
        timings = self._pending_timings or TurnTimings()
        self._pending_timings = None
        timings.item_id = item_id
        timings.mark("committed")
        self._cancel_guess()
        spec, self._speculation = self._speculation, None
        last_speech = self.detector.last_speech_end if self.detector is not None else end
        if spec is not None and (spec.end < last_speech or spec.start > start):
            spec.task.cancel()
            spec = None
            self.hooks.drop_speculation()  # it answered words the user went on from
            for stale in ("stt_start", "stt_done"):
                timings.marks.pop(stale, None)
        item = user_audio_item(item_id)
        entry = Entry(item=item, audio=wire, audio_rate=self.buffer.wire_rate)
        previous = self.conversation.insert(entry)
        if self.transcriber is not None:
            self.transcripts[item_id] = self.hooks.spawn(self._transcribe_item(item_id, pipe, spec, timings),
                                                         "transcribe")
        self.hooks.emit(ev.BufferCommitted(item_id=item_id, previous_item_id=previous))
        if self.hooks.config().type == "realtime":
            self.hooks.emit(ev.ConversationItemAdded(previous_item_id=previous, item=item))
            self.hooks.emit(ev.ConversationItemDone(previous_item_id=previous, item=item))
        self.hooks.turn_timings(timings)

    # ------------------------------------------------------------ transcription of items

    def transcribe_entry(self, entry: Entry) -> asyncio.Task[Transcript | None] | None:
        """Start transcribing a client item's audio (or return the task already running)."""
        if entry.id in self.transcripts:
            return self.transcripts[entry.id]
        if self.transcriber is None or entry.audio is None:
            return None
        pipe = StreamResampler(entry.audio_rate, PIPELINE_RATE).process(entry.audio, last=True)
        task = self.hooks.spawn(
            self._transcribe_item(entry.id, pipe.astype(np.float32) / 32768.0, None, TurnTimings(), entry),
            "transcribe", "bulk")
        self.transcripts[entry.id] = task
        return task

    def forget(self, item_id: str) -> None:
        self.transcripts.pop(item_id, None)

    async def _transcribe_item(
        self, item_id: str, audio: np.ndarray, spec: _Speculation | None, timings: TurnTimings,
        entry: Entry | None = None,
    ) -> Transcript | None:
        """`entry`: the item itself when it is not in the conversation (a response's `input`)."""
        config = self._cfg.transcription
        try:
            transcript = await spec.task if spec is not None else await self._transcribe(audio, timings)
        except TranscriptionError as err:
            _LOGGER.warning("transcription of %s failed: %s", item_id, err)
            if config is not None:
                self.hooks.emit(ev.TranscriptionFailed(item_id=item_id, content_index=0, error={
                    "type": "transcription_error", "code": "transcription_failed", "message": str(err), "param": None}))
            return None
        entry = self.conversation.get(item_id) or entry
        if entry is not None:
            set_transcript(entry, transcript.text)
        if config is not None:
            text = transcript.text
            if text:
                self.hooks.emit(ev.TranscriptionDelta(item_id=item_id, content_index=0, delta=text))
            self.hooks.emit(ev.TranscriptionCompleted(
                item_id=item_id, content_index=0, transcript=text,
                usage={"type": "duration", "seconds": round(transcript.duration_s, 3)}))
        return transcript

    # ------------------------------------------------------------ clear

    def clear(self, silent: bool = False) -> None:
        self._cancel_speculation()
        self._cancel_guess()
        self.hooks.drop_speculation()
        if self._scoring is not None:
            self._scoring.cancel()
            self._scoring = None
        if self.detector is not None:
            self.detector.skip(sum(len(chunk) for chunk in self._backlog))
        self._backlog.clear()
        self.buffer.clear()
        if self.detector is not None:
            self.detector.reset_turn()
        self.speech_item = None
        if self.heard is not None:
            self.heard.clear()
        if not silent:
            self.hooks.emit(ev.BufferCleared())

    @property
    def in_speech(self) -> bool:
        return self.speech_item is not None


def _ms(position: int) -> int:
    return int(position * 1000 // PIPELINE_RATE)

