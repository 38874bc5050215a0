"""Audio in and out: PyAudio devices, or WAV files for tests and demos.

Everything is 16 kHz mono PCM16 (the wire format). Sources deliver one frame
(``frame_ms``) per :meth:`AudioSource.read`; the :class:`Player` owns the
output in its own thread so that the main loop keeps listening (for the wake
word, i.e. barge-in) while a reply plays.
"""

from __future__ import annotations

import abc
import logging
import queue
import threading
import time
import wave
from pathlib import Path
from typing import Callable

from hearth.wire import SAMPLE_RATE

_LOGGER = logging.getLogger(__name__)

BYTES_PER_MS = SAMPLE_RATE * 2 // 1000


class AudioError(RuntimeError):
    pass


# -- reading and converting WAV files -----------------------------------------------
def read_wav(path: str | Path) -> bytes:
    """Read a WAV file as 16 kHz mono PCM16 (converting channels, width and rate if needed)."""
    try:
        with wave.open(str(path), "rb") as wav:
            rate, width, channels = wav.getframerate(), wav.getsampwidth(), wav.getnchannels()
            raw = wav.readframes(wav.getnframes())
    except (OSError, wave.Error, EOFError) as err:
        raise AudioError(f"cannot read WAV file {path}: {err}") from err
    return to_wire_pcm(raw, rate=rate, width=width, channels=channels)


def to_wire_pcm(raw: bytes, *, rate: int, width: int, channels: int) -> bytes:
    if (rate, width, channels) == (SAMPLE_RATE, 2, 1):
        return raw
    import numpy as np

    if width == 2:
        samples = np.frombuffer(raw, dtype="<i2").astype(np.float32)
    elif width == 1:
        samples = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) * 256.0
    elif width == 4:
        samples = np.frombuffer(raw, dtype="<i4").astype(np.float32) / 65536.0
    else:
        raise AudioError(f"unsupported WAV sample width {width}")
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(axis=1)
    if rate != SAMPLE_RATE and len(samples):
        # Linear interpolation is fine for feedback sounds and demo input.
        n_out = int(round(len(samples) * SAMPLE_RATE / rate))
        samples = np.interp(np.linspace(0, len(samples) - 1, n_out), np.arange(len(samples)), samples)
    return np.clip(samples, -32768, 32767).astype("<i2").tobytes()


# -- sources ---------------------------------------------------------------------------
class AudioSource(abc.ABC):
    frame_bytes: int

    @abc.abstractmethod
    def read(self) -> bytes:
        """Block until one frame is available and return it."""

    @property
    def exhausted(self) -> bool:
        """True once a file source has delivered all of its audio (it then yields silence)."""
        return False

    def close(self) -> None:  # noqa: B027
        pass


class WavFileSource(AudioSource):
    """Streams a WAV file frame by frame, in real time or (``fast``) as fast as it is read.

    After the file ends it keeps delivering silence in real time, so that a
    session in progress can finish; :attr:`exhausted` tells the caller.
    """

    def __init__(self, path: str | Path, *, frame_ms: int = 20, fast: bool = False) -> None:
        self.frame_bytes = frame_ms * BYTES_PER_MS
        self._pcm = read_wav(path)
        self._pos = 0
        self._fast = fast
        self._frame_s = frame_ms / 1000
        self._next = None  # type: float | None

    @property
    def exhausted(self) -> bool:
        return self._pos >= len(self._pcm)

    def read(self) -> bytes:
        pace = not self._fast or self.exhausted
        if pace:
            now = time.monotonic()
            if self._next is None or self._next < now - 0.2:
                self._next = now
            delay = self._next - now
            if delay > 0:
                time.sleep(delay)
            self._next += self._frame_s
        else:
            self._next = None
        chunk = self._pcm[self._pos : self._pos + self.frame_bytes]
        self._pos += self.frame_bytes
        return chunk + bytes(self.frame_bytes - len(chunk))


class PyAudioSource(AudioSource):
    def __init__(self, device: int | str | None, *, frame_ms: int = 20) -> None:
        pyaudio = _pyaudio()
        self._pa = pyaudio.PyAudio()
        self.frame_bytes = frame_ms * BYTES_PER_MS
        index = find_device(self._pa, device, output=False)
        try:
            self._stream = self._pa.open(
                format=pyaudio.paInt16,
                channels=1,
                rate=SAMPLE_RATE,
                input=True,
                input_device_index=index,
                frames_per_buffer=self.frame_bytes // 2,
            )
        except OSError as err:
            self._pa.terminate()
            raise AudioError(f"cannot open microphone {device!r} at 16 kHz mono: {err}") from err

    def read(self) -> bytes:
        return self._stream.read(self.frame_bytes // 2, exception_on_overflow=False)

    def close(self) -> None:
        self._stream.close()
        self._pa.terminate()


# -- sinks -----------------------------------------------------------------------------
class AudioSink(abc.ABC):
    """Where the player writes. ``write`` may block for about the audio's duration."""

    @abc.abstractmethod
    def write(self, pcm: bytes) -> None: ...

    def begin_reply(self, key: str) -> None:  # noqa: B027
        pass

    def end_reply(self, key: str, interrupted: bool) -> None:  # noqa: B027
        pass

    def flush(self) -> None:  # noqa: B027
        """Drop audio handed over but not yet heard (barge-in)."""

    def close(self) -> None:  # noqa: B027
        pass


class NullSink(AudioSink):
    def write(self, pcm: bytes) -> None:
        pass


class WavFileSink(AudioSink):
    """Writes replies to WAV files: all into ``output_wav``, or one file each into ``output_dir``.

    With ``realtime`` the writes take as long as playing would (so barge-in
    timing can be tried without a speaker); otherwise they return at once.
    Feedback sounds are not written (only reply audio is).
    """

    def __init__(self, *, output_wav: str | Path | None = None, output_dir: str | Path | None = None, realtime: bool = False) -> None:
        if (output_wav is None) == (output_dir is None):
            raise ValueError("give exactly one of output_wav and output_dir")
        self.output_wav = Path(output_wav) if output_wav else None
        self.output_dir = Path(output_dir) if output_dir else None
        if self.output_dir:
            self.output_dir.mkdir(parents=True, exist_ok=True)
        self.realtime = realtime
        self._all = bytearray()
        self._current: bytearray | None = None
        self._count = 0
        self.files: list[Path] = []

    def begin_reply(self, key: str) -> None:
        self._current = bytearray()
        self._count += 1

    def write(self, pcm: bytes) -> None:
        if self._current is not None:
            self._current += pcm
        if self.realtime:
            time.sleep(len(pcm) / BYTES_PER_MS / 1000)

    def end_reply(self, key: str, interrupted: bool) -> None:
        if self._current is None:
            return
        if self.output_dir:
            path = self.output_dir / f"reply-{self._count:03d}-{key[:8]}.wav"
            write_wav(path, bytes(self._current))
            self.files.append(path)
        else:
            assert self.output_wav is not None
            self._all += self._current
            write_wav(self.output_wav, bytes(self._all))
            if self.output_wav not in self.files:
                self.files.append(self.output_wav)
        _LOGGER.info("Wrote reply audio (%d ms) to %s", len(self._current) // BYTES_PER_MS, self.files[-1])
        self._current = None


class PyAudioSink(AudioSink):
    def __init__(self, device: int | str | None, *, buffer_ms: int = 60) -> None:
        pyaudio = _pyaudio()
        self._pa = pyaudio.PyAudio()
        index = find_device(self._pa, device, output=True)
        try:
            self._stream = self._pa.open(
                format=pyaudio.paInt16,
                channels=1,
                rate=SAMPLE_RATE,
                output=True,
                output_device_index=index,
                frames_per_buffer=max(160, buffer_ms * SAMPLE_RATE // 3000),
            )
        except OSError as err:
            self._pa.terminate()
            raise AudioError(f"cannot open speaker {device!r} at 16 kHz mono: {err}") from err

    def write(self, pcm: bytes) -> None:
        self._stream.write(pcm)

    def flush(self) -> None:
        try:  # abort drops what the device still buffers
            self._stream.abort_stream()
            self._stream.start_stream()
        except OSError:  # pragma: no cover - device specific
            _LOGGER.debug("could not flush the output stream", exc_info=True)

    def close(self) -> None:
        self._stream.close()
        self._pa.terminate()


def write_wav(path: str | Path, pcm: bytes) -> None:
    tmp = Path(f"{path}.tmp")
    with wave.open(str(tmp), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE)
        wav.writeframes(pcm)
    tmp.replace(path)


# -- the player ------------------------------------------------------------------------
PlaybackDone = Callable[[str, int, bool], None]


class Player:
    """Plays replies and feedback sounds from its own thread.

    ``begin(key)`` … ``feed(pcm)`` … ``end()`` plays one reply; when it has
    been written out, ``on_done(key, played_ms, False)`` is called (from the
    player thread). ``stop()`` cuts the reply short at once and returns the
    milliseconds played; it does not call ``on_done``.
    """

    _CHUNK = 20 * BYTES_PER_MS  # write in 20 ms pieces so that stop() is quick

    def __init__(self, sink: AudioSink, on_done: PlaybackDone) -> None:
        self.sink = sink
        self._on_done = on_done
        self._queue: queue.Queue[tuple[int, str, object]] = queue.Queue()
        self._lock = threading.Lock()
        self._generation = 0
        self._key: str | None = None
        self._played_bytes = 0
        self._thread = threading.Thread(target=self._run, name="hearth-player", daemon=True)
        self._thread.start()

    @property
    def playing(self) -> str | None:
        return self._key

    @property
    def played_ms(self) -> int:
        return self._played_bytes // BYTES_PER_MS

    def begin(self, key: str) -> None:
        with self._lock:
            self._key = key
            self._played_bytes = 0
            self._queue.put((self._generation, "begin", key))

    def feed(self, pcm: bytes) -> None:
        self._queue.put((self._generation, "pcm", pcm))

    def end(self) -> None:
        self._queue.put((self._generation, "end", self._key))

    def play_sound(self, pcm: bytes) -> None:
        self._queue.put((self._generation, "sound", pcm))

    def stop(self) -> int:
        """Stop the reply now; return how many ms of it were played."""
        with self._lock:
            self._generation += 1
            key, self._key = self._key, None
            played = self.played_ms
        if key is not None:
            self.sink.flush()
            self.sink.end_reply(key, True)
        return played

    def close(self) -> None:
        self.stop()
        self._queue.put((-1, "quit", None))
        self._thread.join(timeout=2)
        self.sink.close()

    def _current(self, generation: int) -> bool:
        return generation == self._generation

    def _run(self) -> None:
        while True:
            generation, kind, item = self._queue.get()
            if kind == "quit":
                return
            if not self._current(generation):
                continue
            try:
                if kind == "begin":
                    self.sink.begin_reply(str(item))
                elif kind in ("pcm", "sound"):
                    pcm = bytes(item)  # type: ignore[arg-type]
                    for i in range(0, len(pcm), self._CHUNK):
                        if not self._current(generation):
                            break
                        piece = pcm[i : i + self._CHUNK]
                        self.sink.write(piece)
                        if kind == "pcm":
                            with self._lock:
                                if self._current(generation):
                                    self._played_bytes += len(piece)
                elif kind == "end":
                    with self._lock:
                        if not self._current(generation) or self._key is None:
                            continue
                        key, self._key = self._key, None
                        played = self.played_ms
                    self.sink.end_reply(key, False)
                    self._on_done(key, played, False)
            except Exception:  # noqa: BLE001 - never let the player thread die
                _LOGGER.exception("audio output failed")


# -- PyAudio helpers -------------------------------------------------------------------
def _pyaudio():
    try:
        import pyaudio
    except ImportError as err:  # pragma: no cover - depends on the install
        raise AudioError(
            "sound devices need PyAudio (apt-get install portaudio19-dev; pip install pyaudio), "
            "or use --input-wav/--output-wav"
        ) from err
    return pyaudio


def find_device(pa, device: int | str | None, *, output: bool) -> int | None:
    """Resolve a device index or name fragment to a PyAudio index (None: the default)."""
    if device is None or isinstance(device, int):
        return device
    kind = "maxOutputChannels" if output else "maxInputChannels"
    wanted = device.lower()
    for index in range(pa.get_device_count()):
        info = pa.get_device_info_by_index(index)
        if info.get(kind, 0) > 0 and wanted in str(info.get("name", "")).lower():
            return index
    raise AudioError(f"no {'output' if output else 'input'} device matching {device!r} (see --list-devices)")


def list_devices() -> list[str]:
    pyaudio = _pyaudio()
    pa = pyaudio.PyAudio()
    try:
        lines = []
        for index in range(pa.get_device_count()):
            info = pa.get_device_info_by_index(index)
            kinds = []
            if info.get("maxInputChannels", 0) > 0:
                kinds.append("in")
            if info.get("maxOutputChannels", 0) > 0:
                kinds.append("out")
            lines.append(f"{index:3d}  {'/'.join(kinds):6s}  {info.get('name')}")
        return lines
    finally:
        pa.terminate()
