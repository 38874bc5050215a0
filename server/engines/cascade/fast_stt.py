"""A fast, rough transcript of a short utterance, to propose where a turn ends.

faster-whisper pads every input to Whisper's 30 s window, so tiny.en costs ~300 ms
whatever the clip's length: too slow to ask "is the turn over?" 150 ms into a
silence. CTranslate2's Whisper encoder accepts a shorter window, so this calls
`ctranslate2.models.Whisper` directly, on the model the full transcriber already
loaded (no second copy), with the clip plus `PAD_S` of silence as the window,
`max_length` from the clip's duration, and the text cut after its first sentence
end (with a short window the decoder tends to repeat the sentence until
`max_length`). On this machine class it takes ~36 ms for a 2 s command.

It is rougher than the full window (7.5 % vs 3.0 % WER on synthetic commands in
the trials; it mishears some command words): the session uses it only to *propose*
a turn end and to start a reply speculatively. The item's transcript, the
transcription events and any tool call always come from the full transcript.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from concurrent.futures import Executor
from typing import Any

import ctranslate2
import numpy as np

from hearth.server.session.end_of_turn import TurnGuess
from hearth.server.session.interfaces import PIPELINE_RATE, ResponseRequest, TranscriptionError

from .stt import WhisperTranscriber

#: Silence appended to the clip as the encoder's window (less makes the decoder ramble).
PAD_S = 4.0
#: Longest clip transcribed this way; longer turns are not short commands.
MAX_CLIP_S = 12.0
#: Decoder tokens allowed per second of speech (commands run ~3 tokens/s), plus a floor.
TOKENS_PER_S = 6
MIN_TOKENS = 12
_SENTENCE_END = re.compile(r"[.?!]")


def first_sentence(text: str) -> str:
    """The text up to and including its first sentence end, the decoder's repeats dropped.

    With a short window the decoder tends to say the sentence again, with or without
    punctuation between ("turn on the light turn on the light").
    """
    text = text.strip()
    match = _SENTENCE_END.search(text)
    if match:
        text = text[: match.end()]
    words = text.split()
    folded = [w.lower().strip(".,?!") for w in words]
    for size in range(2, len(words) // 2 + 1):
        if folded[:size] == folded[size : 2 * size]:
            return " ".join(words[:size])
    return text


class FastTranscriber:
    """Short-window Whisper on the full transcriber's model; blocking work runs in `executor`."""

    def __init__(self, full: WhisperTranscriber, executor: Executor | None = None) -> None:
        self._full = full
        self._executor = executor
        self._prompt: list[int] | None = None
        self._suppress: list[int] = []

    @property
    def executor(self) -> Executor:
        """Where it runs: its own, else the full transcriber's (the engine's workers)."""
        return self._executor or self._full.executor

    def _prepare(self) -> None:
        if self._prompt is not None:
            return
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens

        whisper = self._full.load()
        tokenizer = Tokenizer(whisper.hf_tokenizer, whisper.model.is_multilingual, task="transcribe",
                              language=self._full.config.language or "en")
        self._tokenizer = tokenizer
        self._suppress = list(get_suppressed_tokens(tokenizer, [-1]) or ())
        self._prompt = [*tokenizer.sot_sequence, tokenizer.no_timestamps]

    def transcribe_blocking(self, audio: np.ndarray) -> str:
        """The first sentence heard in `audio` (float32, 16 kHz); "" for nothing."""
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        if audio.size < PIPELINE_RATE // 10:
            return ""
        audio = audio[-int(MAX_CLIP_S * PIPELINE_RATE):]
        self._prepare()
        whisper = self._full.load()
        window = np.concatenate([audio, np.zeros(int(PAD_S * PIPELINE_RATE), dtype=np.float32)])
        # faster-whisper's own log-mel (numpy); its last frame is the padding's, dropped like it does
        features = whisper.feature_extractor(window)[:, :-1]
        frames = features.shape[-1]
        frames -= frames % 2  # the encoder's convolution halves the frame count
        features = np.ascontiguousarray(features[None, :, :frames], dtype=np.float32)
        max_length = MIN_TOKENS + int(TOKENS_PER_S * audio.size / PIPELINE_RATE)
        assert self._prompt is not None
        result = whisper.model.generate(
            ctranslate2.StorageView.from_array(features), [self._prompt], beam_size=1,
            max_length=max_length, suppress_blank=True, suppress_tokens=self._suppress)[0]
        tokens = [t for t in result.sequences_ids[0] if t < self._tokenizer.eot]
        return first_sentence(self._tokenizer.decode(tokens))

    async def transcribe(self, audio: np.ndarray) -> str:
        """`transcribe_blocking` in a worker; raises TranscriptionError on failure."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self.executor, self.transcribe_blocking, audio)
        except Exception as exc:
            raise TranscriptionError(f"fast speech-to-text failed: {exc}") from exc


def intent_matcher(brain: Any) -> Any | None:
    """The intents brain inside `brain` (itself, or a part of a composed brain); None if there is none."""
    candidates = [brain, getattr(brain, "intents", None), *getattr(brain, "brains", ())]
    for candidate in candidates:
        if candidate is not None and hasattr(candidate, "recognize") and hasattr(candidate, "names_for"):
            return candidate
    return None


class QuickTurnJudge:
    """The cascade's `TurnEndModel`: a fast transcript, then Home Assistant's matcher on it (~40 ms)."""

    def __init__(self, fast: FastTranscriber, matcher: Any, executor: Executor | None = None) -> None:
        self._fast = fast
        self._matcher = matcher
        self._executor = executor

    def _match_blocking(self, text: str, tools: Sequence[dict[str, Any]], instructions: str) -> str | None:
        request = ResponseRequest(instructions=instructions, items=[], tools=list(tools), tool_choice="auto",
                                  output_modalities=["text"], voice="", speed=1.0)
        result = self._matcher.recognize(text, self._matcher.names_for(request))
        return result.intent.name if result is not None else None

    def _guess_blocking(self, audio: np.ndarray, tools: Sequence[dict[str, Any]], instructions: str) -> TurnGuess:
        text = self._fast.transcribe_blocking(audio)
        return TurnGuess(text=text, intent=self._match_blocking(text, tools, instructions) if text else None)

    async def guess(self, audio: np.ndarray, *, tools: Sequence[dict[str, Any]], instructions: str) -> TurnGuess:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor or self._fast.executor, self._guess_blocking, audio, tools,
                                          instructions)

    async def match(self, text: str, *, tools: Sequence[dict[str, Any]], instructions: str) -> str | None:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor or self._fast.executor, self._match_blocking, text, tools,
                                          instructions)
