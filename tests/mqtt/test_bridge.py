"""The bridge against a real server and the real embedded broker, on the scripted engine (fast)."""

from __future__ import annotations

import numpy as np

from hearth.wire import (
    AudioStop,
    PlaybackFinished,
    ReplyEnd,
    ReplyStart,
    SessionAccepted,
    SessionEnd,
)

from .conftest import ScriptedServer, silence, tone


def test_one_turn(scripted_server: ScriptedServer) -> None:
    sat = scripted_server.satellite("kitchen")
    sid = sat.wake()
    sat.stream(sid, np.concatenate([tone(600), silence(400)]))
    accepted = sat.wait_for(SessionAccepted)
    assert accepted.session_id == sid
    stop = sat.wait_for(AudioStop)
    assert stop.session_id == sid
    start = sat.wait_for(ReplyStart)
    end = sat.wait_for(ReplyEnd)
    assert end.text == "The kitchen light is on." and end.expects_reply is False
    pcm = sat.reply_pcm(sid)
    assert abs(len(pcm) - 16 * 300) < 16 * 20, len(pcm)
    assert np.abs(pcm).max() > 1000
    sat.event(PlaybackFinished(sid, played_ms=300))
    assert sat.wait_for(SessionEnd).reason == "done"
    scripted_server.wait_closed(1)
    assert scripted_server.live_sessions() == 0
    sat.close()
