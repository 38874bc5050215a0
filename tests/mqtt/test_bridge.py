"""The bridge against a real server and a real broker, on the scripted engine (fast).

Each test drives a wire-level satellite (tests/mqtt/conftest.py) and asserts the exact
messages the server sends back. The end-to-end tests with real models and the real
satellite are in test_satellite_e2e.py.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import numpy as np
import paho.mqtt.client as paho
import pytest

from hearth.server.context import ServerContext
from hearth.server.mqtt.client import MqttClient
from hearth.server.mqtt.conversation import Phase
from hearth.server.session.interfaces import OutputAudio, OutputText
from hearth.server.session.testing import ScriptedEngine
from hearth.wire import (
    AudioStop,
    AudioStopReason,
    BargeIn,
    ErrorCode,
    ErrorEvent,
    PlaybackFinished,
    ReplyEnd,
    ReplyStart,
    ServerStatus,
    SessionAccepted,
    SessionEnd,
    StandDown,
    StopPlayback,
    decode_server_status,
    new_session_id,
    topics,
)

from tests.server_harness import make_config, run_server

from .conftest import MosquittoBroker, ScriptedServer, WireSatellite, scripted_reply, silence, start_scripted_server, tone

UTTERANCE = np.concatenate([tone(600), silence(400)])


def finish(sat: WireSatellite, sid: str, server: ScriptedServer, closed: int) -> None:
    sat.event(PlaybackFinished(sid, played_ms=300))
    assert sat.wait_for(SessionEnd, where=lambda m: m.session_id == sid).reason == "done"
    server.wait_closed(closed)


def test_one_turn(scripted_server: ScriptedServer) -> None:
    sat = scripted_server.satellite("kitchen")
    sid = sat.wake()
    sat.stream(sid, UTTERANCE)
    assert sat.wait_for(SessionAccepted).session_id == sid
    stop = sat.wait_for(AudioStop)  # the server's VAD ended the turn: stop streaming
    assert (stop.session_id, stop.reason) == (sid, AudioStopReason.END_OF_SPEECH)
    sat.wait_for(ReplyStart)
    end = sat.wait_for(ReplyEnd)
    assert end.text == "The kitchen light is on." and end.expects_reply is False
    pcm = sat.reply_pcm(sid)
    assert abs(len(pcm) - 16 * 300) < 16 * 20, len(pcm)  # 300 ms at 16 kHz, give or take the filter
    assert np.abs(pcm).max() > 1000
    assert end.last_seq == max(f.seq for f in sat.received.frames)
    assert sat.received.frames[-1].end
    assert all(len(f.pcm) <= 1280 for f in sat.received.frames)  # frames of at most 40 ms
    finish(sat, sid, scripted_server, 1)
    assert scripted_server.live_sessions() == 0
    assert scripted_server.call(lambda: len(scripted_server.server.app[ServerContext.KEY].sessions)) == 0
    sat.close()


def test_question_reopens_the_mic_only_after_the_ack(scripted_server: ScriptedServer) -> None:
    scripted_server.engine.reply = scripted_reply("Which room?")
    sat = scripted_server.satellite("kitchen")
    sid = sat.wake()
    sat.stream(sid, UTTERANCE)
    end = sat.wait_for(ReplyEnd)
    assert end.expects_reply is True
    time.sleep(0.5)  # nothing happens on a timer: the session waits for the ack
    assert not sat.commands(SessionEnd)
    assert scripted_server.call(lambda: scripted_server.bridge().conversations[sid].phase) is Phase.AWAITING_ACK
    sat.event(PlaybackFinished(sid, played_ms=300, continue_conversation=True))
    scripted_server.engine.reply = scripted_reply("Done.")
    sat.stream(sid, UTTERANCE)  # the answer, without a wake word
    second = sat.wait_for(ReplyEnd, count=2)
    assert second.text == "Done." and second.expects_reply is False
    assert len(sat.commands(SessionAccepted)) == 1
    # One session: the second request carries the first turn.
    request = scripted_server.engine.requests[-1]
    assert [item.role for item in request.items] == ["user", "assistant", "user"]
    finish(sat, sid, scripted_server, 1)
    sat.close()


def test_barge_in_stops_the_reply_truncates_and_takes_the_next_turn(tmp_path: Path) -> None:
    long_reply = [OutputText("One two three."), OutputAudio(tone(1000, 0.2).astype(np.int16), 16000),
                  OutputText(" Four five six."), OutputAudio(tone(1000, 0.2).astype(np.int16), 16000)]
    engine = ScriptedEngine(reply=long_reply, chunk_delay=0.4)
    context, port = start_scripted_server(tmp_path, engine)
    with context as running:
        server = ScriptedServer(running, engine, port)
        sat = server.satellite("kitchen")
        sid = sat.wake()
        sat.stream(sid, UTTERANCE)
        sat.wait_for(ReplyStart)
        sat.event(BargeIn(sid, played_ms=700, wake_word="hey_jarvis", score=0.9))
        assert sat.wait_for(StopPlayback).session_id == sid
        session = server.call(lambda: server.bridge().conversations[sid].session)

        def assistant() -> tuple[float, str]:
            entry = next(e for e in session.conversation.entries() if e.item.get("role") == "assistant")
            return entry.audio_ms, entry.item["content"][0]["transcript"]

        audio_ms, heard = server.call(assistant)
        assert audio_ms == pytest.approx(700, abs=1)  # what the user heard, not what was made
        assert heard == "One two"  # the words spoken in the first 700 ms of 1000
        sat.stream(sid, silence(1000), realtime=1.0)  # the mic is open again; the user pauses
        assert not sat.commands(ReplyEnd)  # the cancelled response sent nothing more
        engine.reply = scripted_reply("Okay.")
        engine.chunk_delay = 0.0
        sat.stream(sid, UTTERANCE)  # the next turn, same session, no wake word
        end = sat.wait_for(ReplyEnd)
        assert end.text == "Okay."
        assert len(sat.commands(ReplyStart)) == 2
        finish(sat, sid, server, 1)
        sat.close()


def test_nothing_heard_ends_the_session(scripted_server: ScriptedServer) -> None:
    sat = scripted_server.satellite("kitchen")
    sid = sat.wake()
    sat.stream(sid, silence(400), end=True)
    sat.event(AudioStop(sid, reason=AudioStopReason.END_OF_SPEECH, last_seq=sat.seq - 1))
    assert sat.wait_for(SessionEnd).reason == "done"
    assert not sat.commands(ReplyStart)
    scripted_server.wait_closed(1)
    sat.close()


def test_satellite_stopping_early_still_gets_its_answer(scripted_server: ScriptedServer) -> None:
    """Its edge VAD closed the mic before the server's VAD heard enough silence."""
    sat = scripted_server.satellite("kitchen")
    sid = sat.wake()
    sat.stream(sid, np.concatenate([tone(600), silence(60)]), end=True)
    assert sat.wait_for(ReplyEnd).text == "The kitchen light is on."
    finish(sat, sid, scripted_server, 1)
    sat.close()


def test_two_satellites_one_answers(scripted_server: ScriptedServer) -> None:
    near, far = scripted_server.satellite("kitchen"), scripted_server.satellite("hall")
    far_sid = far.wake(score=0.7, energy=-30.0)
    near_sid = near.wake(score=0.95, energy=-18.0)
    far.stream(far_sid, UTTERANCE)
    near.stream(near_sid, UTTERANCE)
    assert near.wait_for(SessionAccepted).session_id == near_sid
    down = far.wait_for(StandDown)
    assert (down.session_id, down.winner, down.reason) == (far_sid, "kitchen", "other-satellite")
    near.wait_for(ReplyEnd)
    time.sleep(0.3)
    assert not far.commands(SessionAccepted) and not far.commands(ReplyStart) and not far.received.frames
    assert len(scripted_server.engine.requests) == 1
    finish(near, near_sid, scripted_server, 1)
    near.close()
    far.close()


def test_satellite_going_offline_mid_stream_frees_its_session(scripted_server: ScriptedServer) -> None:
    sat = scripted_server.satellite("kitchen")
    sid = sat.wake()
    sat.stream(sid, tone(300))
    sat.wait_for(SessionAccepted)
    sat.close(clean=False)  # crash: the broker publishes its last will
    log = scripted_server.wait_closed(1)
    assert log[0][:2] == ("kitchen", sid) and "offline" in log[0][2]
    assert scripted_server.live_sessions() == 0
    other = scripted_server.satellite("hall")  # and the server serves the next one
    other_sid = other.wake()
    other.stream(other_sid, UTTERANCE)
    other.wait_for(ReplyEnd)
    finish(other, other_sid, scripted_server, 2)
    # amqtt 0.12.1 replays every retained message matching any client's filter on
    # connect; the embedded broker's fix keeps kitchen's last will away from hall.
    assert other.foreign == []
    other.close()


def test_a_silent_stream_times_out(scripted_server: ScriptedServer) -> None:
    sat = scripted_server.satellite("kitchen")
    sid = sat.wake()
    sat.stream(sid, tone(200))  # then nothing: the satellite hung, its link is still up
    began = time.monotonic()
    assert sat.wait_for(SessionEnd, timeout=5).reason == "timeout"
    # stream_timeout_s is 1 s in these tests: it ended on that timeout, not before (load only delays it).
    assert time.monotonic() - began > 0.8
    scripted_server.wait_closed(1)
    sat.close()


def test_no_ack_times_out(scripted_server: ScriptedServer) -> None:
    sat = scripted_server.satellite("kitchen")
    sid = sat.wake()
    sat.stream(sid, UTTERANCE)
    sat.wait_for(ReplyEnd)
    assert sat.wait_for(SessionEnd, timeout=6).reason == "timeout"  # ack_timeout_s 2 s + 0.3 s of reply
    sat.close()


def test_bad_input_is_answered_with_an_error_and_nothing_breaks(scripted_server: ScriptedServer) -> None:
    sat = scripted_server.satellite("kitchen")
    sat.raw_event(b"{not json")
    error = sat.wait_for(ErrorEvent)
    assert error.code == ErrorCode.PROTOCOL and "not JSON" in error.message
    assert error.context and error.context["topic"] == topics.satellite_event("kitchen")
    sat.raw_event(b'{"type": "wake", "session_id": "nope"}')  # rate-limited: at most one error a second
    sat.raw_event(b'{"type": "something-from-the-future", "x": 1}')  # unknown types are skipped quietly
    time.sleep(1.1)
    sat.raw_audio(b"HF\x01")  # a frame shorter than its header
    second = sat.wait_for(ErrorEvent, count=2)
    assert second.code == ErrorCode.PROTOCOL and "shorter than its header" in second.message
    time.sleep(1.1)
    sat.stream(new_session_id(), tone(40))  # audio for a session the server does not know
    unknown = sat.wait_for(ErrorEvent, count=3)
    assert unknown.code == ErrorCode.UNKNOWN_SESSION and unknown.session_id is not None
    assert len(sat.commands(ErrorEvent)) == 3
    sid = sat.wake()  # the bridge still works
    sat.stream(sid, UTTERANCE)
    sat.wait_for(ReplyEnd)
    finish(sat, sid, scripted_server, 1)
    sat.close()


def test_server_status_is_retained_with_a_last_will(tmp_path: Path, mosquitto: MosquittoBroker) -> None:
    engine = ScriptedEngine()
    statuses: list[ServerStatus] = []
    watcher = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    watcher.on_message = lambda c, u, m: statuses.append(decode_server_status(m.payload)) if m.payload else None
    watcher.connect(mosquitto.host, mosquitto.port)
    watcher.subscribe(topics.all_server_statuses(), qos=1)
    watcher.loop_start()
    context, _ = start_scripted_server(tmp_path, engine, {"url": mosquitto.url, "server_id": "house"})
    with context as running:
        client = running.app[MqttClient.KEY]
        assert client.protocol_name == "5"  # Mosquitto speaks MQTT 5
        deadline = time.monotonic() + 5
        while not statuses and time.monotonic() < deadline:
            time.sleep(0.02)
        assert statuses[-1].online and statuses[-1].server_id == "house"
        assert statuses[-1].arbitration_window_ms == 100
    time.sleep(0.3)
    assert statuses[-1] == ServerStatus.offline("house")
    watcher.loop_stop()
    watcher.disconnect()


def test_barge_in_after_the_reply_ended_truncates_and_listens(scripted_server: ScriptedServer) -> None:
    scripted_server.engine.reply = scripted_reply("It is sunny and warm today.", audio_ms=1000)
    sat = scripted_server.satellite("kitchen")
    sid = sat.wake()
    sat.stream(sid, UTTERANCE)
    sat.wait_for(ReplyEnd)  # all sent; the satellite is still playing it
    sat.event(BargeIn(sid, played_ms=400))
    sat.wait_for(StopPlayback)
    conversation = scripted_server.call(lambda: scripted_server.bridge().conversations[sid])
    assert scripted_server.call(lambda: conversation.phase) is Phase.LISTENING
    entry = scripted_server.call(lambda: next(e for e in conversation.session.conversation.entries()
                                              if e.item.get("role") == "assistant"))
    assert entry.audio_ms == pytest.approx(400, abs=1)
    scripted_server.engine.reply = scripted_reply("Okay.")
    sat.stream(sid, UTTERANCE)
    assert sat.wait_for(ReplyEnd, count=2).text == "Okay."
    finish(sat, sid, scripted_server, 1)
    sat.close()


def test_playback_stopped_elsewhere_truncates_and_ends(scripted_server: ScriptedServer) -> None:
    """Home Assistant sent stop-playback; the satellite acks with interrupted: true and goes idle."""
    scripted_server.engine.reply = scripted_reply("A long answer about the weather.", audio_ms=1000)
    sat = scripted_server.satellite("kitchen")
    sid = sat.wake()
    sat.stream(sid, UTTERANCE)
    sat.wait_for(ReplyEnd)
    session = scripted_server.call(lambda: scripted_server.bridge().conversations[sid].session)
    sat.event(PlaybackFinished(sid, played_ms=250, interrupted=True))
    log = scripted_server.wait_closed(1)
    assert log[-1] == ("kitchen", sid, "playback stopped")
    entry = next(e for e in session.conversation.entries() if e.item.get("role") == "assistant")
    assert entry.audio_ms == pytest.approx(250, abs=1)
    assert not sat.commands(SessionEnd)  # the satellite already went idle
    sat.close()


def test_a_continued_turn_with_no_answer_ends_quietly(scripted_server: ScriptedServer) -> None:
    scripted_server.engine.reply = scripted_reply("Which room?")
    sat = scripted_server.satellite("kitchen")
    sid = sat.wake()
    sat.stream(sid, UTTERANCE)
    sat.wait_for(ReplyEnd)
    sat.event(PlaybackFinished(sid, played_ms=300, continue_conversation=True))
    sat.stream(sid, silence(300), end=True)
    sat.event(AudioStop(sid, reason=AudioStopReason.NO_SPEECH))  # nobody answered the question
    log = scripted_server.wait_closed(1)
    assert log[-1][0] == "kitchen" and log[-1][2] in ("nothing heard", "satellite stopped: no-speech")
    assert scripted_server.live_sessions() == 0
    sat.close()


def test_shutdown_ends_live_sessions(tmp_path: Path) -> None:
    engine = ScriptedEngine()
    context, port = start_scripted_server(tmp_path, engine)
    with context as running:
        sat = ScriptedServer(running, engine, port).satellite("kitchen")
        sid = sat.wake()
        sat.stream(sid, tone(200))
        sat.wait_for(SessionAccepted)
    assert sat.wait_for(SessionEnd, timeout=5).reason == "cancelled"
    sat.client.loop_stop()


def test_per_satellite_voice_and_instructions_reach_the_engine(tmp_path: Path) -> None:
    engine = ScriptedEngine(reply=scripted_reply("Hi."))
    context, port = start_scripted_server(tmp_path, engine, {"satellites": {
        "bedroom": {"voice": "echo", "instructions": "You are in the bedroom."}}})
    with context as running:
        server = ScriptedServer(running, engine, port)
        for sat_id in ("bedroom", "kitchen"):
            sat = server.satellite(sat_id)
            sid = sat.wake()
            sat.stream(sid, UTTERANCE)
            sat.wait_for(ReplyEnd)
            finish(sat, sid, server, 1 if sat_id == "bedroom" else 2)
            sat.close()
    bedroom, kitchen = engine.requests
    assert (bedroom.voice, bedroom.instructions) == ("echo", "You are in the bedroom.")
    assert kitchen.voice == "alloy" and kitchen.instructions.startswith("You are Hearth")


def test_a_taken_broker_port_stops_the_server_with_a_clear_message(tmp_path: Path) -> None:
    from hearth.server.app import StartupError

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = make_config(tmp_path, {"mqtt": {"broker": {"port": port}}})
        with pytest.raises(StartupError, match=rf"cannot listen on 127.0.0.1:{port}.*set mqtt.url"):
            with run_server(config, engine_factory=lambda _c, _e: ScriptedEngine()):
                pass


# ----------------------------------------------------------------------------- hostile satellites


def test_an_event_naming_another_satellites_session_never_acts_on_it(tmp_path: Path) -> None:
    """The sender is the topic's satellite: a session id alone proves nothing (checked for every event)."""
    engine = ScriptedEngine(reply=scripted_reply("Done."), transcript="turn on the light")
    context, port = start_scripted_server(tmp_path, engine, {"arbitration_window_ms": 1500})
    with context as server:
        scripted = ScriptedServer(server, engine, port)
        porch, kitchen = scripted.satellite("porch"), scripted.satellite("kitchen")
        sid = porch.wake()  # under arbitration for 1.5 s
        porch.stream(sid, UTTERANCE[: 16 * 200])
        time.sleep(0.1)
        for event in (ErrorEvent(ErrorCode.TIMEOUT, "not mine", session_id=sid), AudioStop(sid, reason="cancelled"),
                      BargeIn(sid), PlaybackFinished(sid, interrupted=True)):
            kitchen.event(event)
        kitchen.stream(sid, tone(100))  # and audio into it
        refusal = kitchen.wait_for(ErrorEvent)
        assert refusal.code == ErrorCode.PROTOCOL and "another satellite's session" in refusal.message
        assert porch.wait_for(SessionAccepted, timeout=5).session_id == sid  # its wake was not withdrawn
        porch.stream(sid, UTTERANCE[16 * 200 :])
        porch.wait_for(ReplyEnd)
        # The live session: the same events from kitchen change nothing either.
        time.sleep(1.1)  # past the error rate limit
        for event in (ErrorEvent(ErrorCode.TIMEOUT, "not mine", session_id=sid), AudioStop(sid, reason="cancelled"),
                      BargeIn(sid), PlaybackFinished(sid, interrupted=True)):
            kitchen.event(event)
        kitchen.wait_for(ErrorEvent, count=2)
        assert scripted.live_sessions() == 1 and not scripted.call(lambda: list(scripted.bridge().closed_log))
        assert not porch.commands(StopPlayback) and not porch.commands(SessionEnd)
        finish(porch, sid, scripted, 1)
        assert scripted.wait_closed(1)[0] == ("porch", sid, "done")
        porch.close()
        kitchen.close()


@pytest.mark.parametrize("score", [b"1e308", b"NaN", b"Infinity", b"1.5", b"-1"])
def test_a_wake_score_outside_0_to_1_is_refused_and_never_wins(scripted_server: ScriptedServer, score: bytes) -> None:
    cheat, honest = scripted_server.satellite("kitchen"), scripted_server.satellite("hall")
    cheat_sid = new_session_id()
    cheat.raw_event(b'{"type":"wake","session_id":"' + cheat_sid.encode() + b'","wake_word":"hey_jarvis","score":'
                    + score + b',"energy":-10}')
    sid = honest.wake(score=0.5)
    refusal = cheat.wait_for(ErrorEvent)
    assert refusal.code == ErrorCode.PROTOCOL and ("wake score" in refusal.message or "JSON number" in refusal.message)
    assert honest.wait_for(SessionAccepted).session_id == sid
    assert not cheat.commands(SessionAccepted) and not cheat.commands(StandDown)
    honest.stream(sid, UTTERANCE)
    honest.wait_for(ReplyEnd)
    finish(honest, sid, scripted_server, 1)
    cheat.close()
    honest.close()


# ----------------------------------------------------------------------------- a broker already on the port


def test_a_broker_already_on_the_port_is_used(tmp_path: Path, mosquitto: MosquittoBroker,
                                              caplog: pytest.LogCaptureFixture) -> None:
    from hearth.server.mqtt.broker import EmbeddedBroker

    caplog.set_level("WARNING", logger="hearth.server.mqtt.broker")
    engine = ScriptedEngine(reply=scripted_reply("The kitchen light is on."), transcript="turn on the light")
    # Nothing configured but the port, on which Mosquitto already runs (as in a Home Assistant home).
    config = make_config(tmp_path, {"mqtt": {"broker": {"port": mosquitto.port}, "ack_timeout_s": 2.0},
                                    "session": {"turn_detection": {"type": "server_vad", "silence_duration_ms": 200}}})
    assert config.mqtt.embedded
    with run_server(config, engine_factory=lambda _c, _e: engine) as server:
        broker = server.app[EmbeddedBroker.KEY]
        assert broker.adopted is not None and broker.adopted.port == mosquitto.port
        client = server.app[MqttClient.KEY]
        assert client.connected and client.protocol_name == "5"  # Mosquitto speaks MQTT 5; amqtt would not
        assert "already answers there: using that broker" in caplog.text
        sat = WireSatellite("kitchen", mosquitto.host, mosquitto.port, protocol=paho.MQTTv5)
        sid = sat.wake()
        sat.wait_for(SessionAccepted)
        sat.stream(sid, UTTERANCE)
        assert sat.wait_for(ReplyEnd).text == "The kitchen light is on."
        sat.event(PlaybackFinished(sid, played_ms=300))
        assert sat.wait_for(SessionEnd).reason == "done"
        sat.close()


def test_a_broker_on_the_port_that_refuses_the_server_stops_it_with_a_clear_message(tmp_path: Path) -> None:
    from hearth.server.app import StartupError

    from .conftest import find_mosquitto

    binary = find_mosquitto()
    if binary is None:
        pytest.skip("mosquitto binary not found: apt-get install mosquitto")
    broker = MosquittoBroker(binary, tmp_path / "mosquitto", extra_config="allow_anonymous false")
    broker.start()
    try:
        config = make_config(tmp_path, {"mqtt": {"broker": {"port": broker.port}}})
        with pytest.raises(StartupError, match=rf"cannot listen on 127.0.0.1:{broker.port}.*refused the server "
                                               r"\(Not authorized\).*set mqtt.url"):
            with run_server(config, engine_factory=lambda _c, _e: ScriptedEngine()):
                pass
    finally:
        broker.stop()
