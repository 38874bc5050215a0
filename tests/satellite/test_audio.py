"""Audio helpers: WAV input/output, format conversion, device lookup, the player."""

from __future__ import annotations

import threading
import time
import wave

import numpy as np
import pytest

from hearth.satellite.audio import (
    AudioError,
    Player,
    WavFileSink,
    WavFileSource,
    find_device,
    read_wav,
    to_wire_pcm,
)


def _write(path, samples: np.ndarray, rate: int, channels: int = 1) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(samples.astype("<i2").tobytes())


def test_read_wav_converts_to_16k_mono(tmp_path):
    t = np.arange(44100) / 44100
    tone = (np.sin(2 * np.pi * 440 * t) * 10000).astype(np.int16)
    _write(tmp_path / "stereo.wav", np.stack([tone, tone], axis=1).reshape(-1), 44100, channels=2)
    pcm = read_wav(tmp_path / "stereo.wav")
    samples = np.frombuffer(pcm, dtype=np.int16)
    assert abs(len(samples) - 16000) <= 1
    assert 6000 < np.abs(samples).max() <= 10001
    assert to_wire_pcm(b"\x01\x00", rate=16000, width=2, channels=1) == b"\x01\x00"
    with pytest.raises(AudioError):
        read_wav(tmp_path / "missing.wav")


def test_file_source_fast_then_real_time_silence(tmp_path, monkeypatch):
    _write(tmp_path / "in.wav", np.ones(16000, dtype=np.int16), 16000)
    source = WavFileSource(tmp_path / "in.wav", frame_ms=20, fast=True)
    sleeps: list[float] = []
    real_sleep = time.sleep
    monkeypatch.setattr(time, "sleep", lambda s: (sleeps.append(s), real_sleep(s)))
    frames = [source.read() for _ in range(50)]
    assert sleeps == [], "fast mode does not pace the file"
    assert all(len(f) == 640 for f in frames) and source.exhausted
    started = time.monotonic()
    for _ in range(10):
        assert source.read() == bytes(640)
    assert time.monotonic() - started >= 0.15, "after the file, silence comes in real time"


def test_file_sink_one_file_or_one_per_reply(tmp_path):
    single = WavFileSink(output_wav=tmp_path / "all.wav")
    for key, pcm in (("a" * 32, b"\x01\x00" * 100), ("b" * 32, b"\x02\x00" * 50)):
        single.begin_reply(key)
        single.write(pcm)
        single.end_reply(key, False)
    with wave.open(str(tmp_path / "all.wav")) as wav:
        assert wav.getnframes() == 150 and wav.getframerate() == 16000
    per = WavFileSink(output_dir=tmp_path / "replies")
    per.begin_reply("c" * 32)
    per.write(b"\x00\x00" * 10)
    per.end_reply("c" * 32, False)
    assert [p.name for p in per.files] == ["reply-001-cccccccc.wav"]
    with pytest.raises(ValueError):
        WavFileSink()


def test_find_device_by_name_or_index():
    class FakePa:
        devices = [
            {"name": "bcm2835 Headphones", "maxInputChannels": 0, "maxOutputChannels": 2},
            {"name": "seeed-2mic-voicecard", "maxInputChannels": 2, "maxOutputChannels": 2},
            {"name": "USB PnP Sound Device", "maxInputChannels": 1, "maxOutputChannels": 0},
        ]

        def get_device_count(self):
            return len(self.devices)

        def get_device_info_by_index(self, index):
            return self.devices[index]

    pa = FakePa()
    assert find_device(pa, None, output=False) is None
    assert find_device(pa, 3, output=False) == 3
    assert find_device(pa, "usb", output=False) == 2
    assert find_device(pa, "SEEED", output=True) == 1
    with pytest.raises(AudioError, match="no output device"):
        find_device(pa, "usb", output=True)


def test_player_reports_done_and_stops_at_once():
    done = []
    event = threading.Event()

    sink = WavFileSink(output_wav="/dev/null", realtime=True)  # writes take as long as playing
    sink.end_reply = lambda key, interrupted: None  # type: ignore[method-assign]  # keep no file
    player = Player(sink, lambda key, played, interrupted: (done.append((key, played)), event.set()))
    player.begin("a" * 32)
    player.feed(bytes(3200))  # 100 ms
    player.end()
    assert event.wait(2) and done == [("a" * 32, 100)]
    player.begin("b" * 32)
    player.feed(bytes(64000))  # 2 s
    time.sleep(0.1)
    played = player.stop()
    assert 20 <= played < 1000 and player.playing is None
    time.sleep(0.1)
    assert len(done) == 1, "a stopped reply is not reported as done"
    player.close()
