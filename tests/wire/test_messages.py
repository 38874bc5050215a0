"""Every JSON wire message round-trips, and old and new peers still understand each other."""

from __future__ import annotations

import dataclasses
import importlib
import json
import pkgutil

import pytest

import hearth.wire as wire
from hearth.wire import (
    MESSAGE_TYPES,
    Announce,
    ConversationRequest,
    ConversationResponse,
    ExposedEntity,
    IntegrationStatus,
    RequestDone,
    SatelliteActivity,
    SatelliteSettings,
    StartConversation,
    TimerCancelled,
    TimerFinished,
    TimerStarted,
    TimerUpdated,
    ToolCall,
    ToolCatalog,
    ToolDefinition,
    ToolResult,
    AudioStop,
    BargeIn,
    ErrorEvent,
    Message,
    Mute,
    PlaybackFinished,
    ProtocolError,
    ReplyEnd,
    ReplyStart,
    SatelliteCapabilities,
    SatelliteStatus,
    ServerStatus,
    SessionAccepted,
    SessionEnd,
    SessionStart,
    StandDown,
    StopPlayback,
    UnknownMessageType,
    WakeCandidate,
    decode_message,
)

SID = "0123456789abcdef0123456789abcdef"

# Test data for every message type: at least a minimal and a full instance.
# A message class added to hearth.wire without an entry here fails
# test_every_message_type_has_test_data.
SAMPLES: dict[type[Message], list[Message]] = {
    SatelliteStatus: [
        SatelliteStatus("kitchen"),
        SatelliteStatus.offline("kitchen"),
        SatelliteStatus(
            "kitchen",
            state="listening",
            muted=False,
            session_id=SID,
            name="Kitchen",
            area="kitchen",
            version="0.1.0",
            capabilities=SatelliteCapabilities(
                wake_words=("hey_jarvis", "okay_nabu"), wake_engine="openwakeword", has_vad=True, barge_in=True
            ),
        ),
    ],
    ServerStatus: [
        ServerStatus("house"),
        ServerStatus.offline("house"),
        ServerStatus("house", version="0.1.0", name="House", arbitration_window_ms=200),
    ],
    WakeCandidate: [
        WakeCandidate(SID, "hey_jarvis", 0.97),
        WakeCandidate(SID, "hey_jarvis", 0.97, energy=-23.5, timestamp=1700000000.25),
    ],
    SessionAccepted: [SessionAccepted(SID), SessionAccepted(SID, conversation_id="conv_1")],
    StandDown: [StandDown(SID), StandDown(SID, reason="busy"), StandDown(SID, winner="living-room")],
    SessionStart: [SessionStart(SID), SessionStart(SID, conversation_id="conv_1")],
    SessionEnd: [SessionEnd(SID), SessionEnd(SID, reason="timeout")],
    AudioStop: [AudioStop(SID), AudioStop(SID, reason="max-length", last_seq=749)],
    ReplyStart: [ReplyStart(SID), ReplyStart(SID, text="The kitchen light is on.")],
    ReplyEnd: [ReplyEnd(SID), ReplyEnd(SID, last_seq=120, expects_reply=True, text="Which room?")],
    PlaybackFinished: [
        PlaybackFinished(SID),
        PlaybackFinished(SID, played_ms=2400, interrupted=True),
        PlaybackFinished(SID, played_ms=1800, continue_conversation=True),
    ],
    BargeIn: [BargeIn(SID), BargeIn(SID, played_ms=640, wake_word="hey_jarvis", score=0.99)],
    StopPlayback: [StopPlayback(), StopPlayback(SID)],
    Mute: [Mute(True), Mute(False)],
    ErrorEvent: [
        ErrorEvent("timeout", "no reply"),
        ErrorEvent("protocol", "bad frame", session_id=SID, context={"topic": "hearth/v1/satellite/k/audio"}),
    ],
    # Home Assistant <-> server (hearth/wire/assist.py)
    ToolCatalog: [
        ToolCatalog(()),
        ToolCatalog(
            (
                ToolDefinition(
                    "HassTurnOn",
                    "Turns on/opens a device or entity",
                    {"type": "object", "properties": {"name": {"type": "string"}, "area": {"type": "string"}}},
                ),
                ToolDefinition("GetLiveContext"),
            ),
            satellite_id="kitchen",
            api_prompt="When controlling Home Assistant always call the intent tools.",
            llm_api=("assist",),
            language="en",
            entities=(
                ExposedEntity("light.kitchen", "Kitchen light", "light", aliases=("ceiling",), area="Kitchen"),
                ExposedEntity("cover.garage", "Garage door", "cover", device_class="garage", floor="Ground"),
            ),
            areas=("Kitchen", "Living Room"),
            revision="3f2a",
        ),
    ],
    ToolCall: [
        ToolCall("call_1", "HassTurnOn", {}),
        ToolCall("call_x7.2", "HassTurnOn", {"name": "Kitchen light", "nested": {"a": [1, 2]}}, satellite_id="kitchen", text="turn on the kitchen light", language="en"),
    ],
    ToolResult: [
        ToolResult("call_1"),
        ToolResult("call_1", result={"response_type": "action_done", "data": {"success": []}}, speech="Turned on the light"),
        ToolResult("call_1", error="no-match", message="I can't control the garage door."),
    ],
    Announce: [Announce("r1", "kitchen", "Dinner is ready"), Announce("r1", "kitchen", "Dinner", preannounce=False)],
    StartConversation: [
        StartConversation("r2", "kitchen"),
        StartConversation("r2", "kitchen", text="Shall I close the blinds?", extra_system_prompt="It is late.", preannounce=False),
    ],
    RequestDone: [RequestDone("r1"), RequestDone("r1", error="unavailable", message="The kitchen satellite is offline.")],
    ConversationRequest: [
        ConversationRequest("q1", "turn on the light"),
        ConversationRequest("q1", "turn on the light", conversation_id="c1", language="en", satellite_id="kitchen", extra_system_prompt="Be brief."),
    ],
    ConversationResponse: [
        ConversationResponse("q1", "Done."),
        ConversationResponse("q1", "Which light?", conversation_id="c1", continue_conversation=True),
        ConversationResponse("q1", "Sorry, the server is busy.", error="busy"),
    ],
    TimerStarted: [TimerStarted("kitchen", "t1"), TimerStarted("kitchen", "01JABCDEF", total_seconds=300, name="pasta")],
    TimerUpdated: [TimerUpdated("kitchen", "t1"), TimerUpdated("kitchen", "t1", seconds_left=42, is_active=False, total_seconds=60, name="tea")],
    TimerCancelled: [TimerCancelled("kitchen", "t1"), TimerCancelled("kitchen", "t1", name="tea")],
    TimerFinished: [TimerFinished("kitchen", "t1"), TimerFinished("kitchen", "t1", total_seconds=300, name="pasta")],
    SatelliteSettings: [SatelliteSettings("kitchen"), SatelliteSettings("kitchen", muted=True, wake_sensitivity="high")],
    SatelliteActivity: [
        SatelliteActivity("kitchen"),
        SatelliteActivity("kitchen", transcript="turn on the light", response="Turned on the light.", conversation_id="c1"),
    ],
    IntegrationStatus: [IntegrationStatus("online"), IntegrationStatus("offline", version="0.1.0", ha_version="2025.4.4")],
}

ALL_SAMPLES = [pytest.param(sample, id=f"{type(sample).__name__}-{i}") for cls, samples in SAMPLES.items() for i, sample in enumerate(samples)]


def _import_all_wire_modules() -> None:
    for module in pkgutil.iter_modules(wire.__path__):
        importlib.import_module(f"hearth.wire.{module.name}")


def test_every_message_type_has_test_data():
    _import_all_wire_modules()
    missing = sorted(name for name, cls in MESSAGE_TYPES.items() if cls not in SAMPLES or not SAMPLES[cls])
    assert not missing, f"add test data to SAMPLES for: {missing}"


def test_every_message_class_is_exported_and_frozen():
    _import_all_wire_modules()
    for message_type, cls in MESSAGE_TYPES.items():
        assert cls.type == message_type
        assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen, cls
        assert getattr(wire, cls.__name__) is cls, f"{cls.__name__} is not exported from hearth.wire"


def test_type_strings_are_unique():
    types = [cls.type for cls in MESSAGE_TYPES.values()]
    assert len(types) == len(set(types))


@pytest.mark.parametrize("message", ALL_SAMPLES)
def test_round_trip(message: Message):
    data = message.to_dict()
    assert data["type"] == message.type
    assert list(data)[0] == "type"
    assert type(message).from_dict(data) == message
    assert decode_message(message.to_json()) == message
    # JSON text round trip (what really crosses the broker)
    assert decode_message(json.dumps(data)) == message


@pytest.mark.parametrize("message", ALL_SAMPLES)
def test_encoders_omit_none(message: Message):
    def walk(value):
        if isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)
        else:
            assert value is not None

    walk(message.to_dict())
    assert b"null" not in message.to_json()


@pytest.mark.parametrize("message", ALL_SAMPLES)
def test_newer_peer_extra_keys_are_ignored(message: Message):
    """A newer peer adds fields (top level and nested); an older decoder ignores them."""
    data = message.to_dict()
    data["added_in_v1_9"] = {"anything": [1, 2, 3]}
    if isinstance(data.get("capabilities"), dict):  # nested dataclasses ignore unknown keys too
        data["capabilities"]["nested_future_key"] = True
    assert decode_message(json.dumps(data)) == message


@pytest.mark.parametrize("message", ALL_SAMPLES)
def test_older_peer_without_optional_fields_still_decodes(message: Message):
    """An older peer sends only the required fields; the decoder fills in defaults."""
    cls = type(message)
    required = {
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    data = {key: value for key, value in message.to_dict().items() if key == "type" or key in required}
    decoded = decode_message(json.dumps(data))
    assert decoded == cls(**{name: getattr(message, name) for name in required})


def test_explicit_null_is_treated_as_absent():
    decoded = decode_message(json.dumps({"type": "reply-end", "session_id": SID, "last_seq": None}))
    assert decoded == ReplyEnd(SID)


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        (b"", "not JSON"),
        (b"\xff\xfe", "not UTF-8"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"session_id": "x"}', "no string 'type'"),
        (b'{"type": 7}', "no string 'type'"),
        (json.dumps({"type": "wake", "wake_word": "x", "score": 1}).encode(), "missing field 'session_id'"),
        (json.dumps({"type": "wake", "session_id": "nothex", "wake_word": "x", "score": 1}).encode(), "session id"),
        (json.dumps({"type": "wake", "session_id": SID, "wake_word": "x", "score": "high"}).encode(), "must be a number"),
        (json.dumps({"type": "wake", "session_id": SID, "wake_word": "x", "score": True}).encode(), "must be a number"),
        (json.dumps({"type": "mute", "muted": "yes"}).encode(), "must be a boolean"),
        (json.dumps({"type": "audio-stop", "session_id": SID, "last_seq": 1.5}).encode(), "must be an integer"),
        (json.dumps({"type": "satellite-status", "satellite_id": "a/b"}).encode(), "id must be"),
        (json.dumps({"type": "satellite-status", "satellite_id": "k", "capabilities": []}).encode(), "must be an object"),
        (
            json.dumps({"type": "satellite-status", "satellite_id": "k", "capabilities": {"wake_words": "x"}}).encode(),
            "must be a list",
        ),
        (json.dumps({"type": "reply-start", "session_id": SID, "rate": 22050}).encode(), "16 kHz"),
        (json.dumps({"type": "error", "code": "x", "message": "y", "context": {"a": 1}}).encode(), "must be a string"),
        (b"{" + b" " * (70 * 1024) + b"}", "too large"),
    ],
)
def test_malformed_payload_raises_protocol_error(payload: bytes, needle: str):
    with pytest.raises(ProtocolError) as info:
        decode_message(payload, topic="hearth/v1/satellite/k/event")
    assert needle in str(info.value)
    assert info.value.context.get("topic") == "hearth/v1/satellite/k/event"


def test_unknown_type_is_its_own_error():
    with pytest.raises(UnknownMessageType) as info:
        decode_message(b'{"type": "hologram-start", "session_id": "x"}')
    assert isinstance(info.value, ProtocolError)
    assert info.value.context["type"] == "hologram-start"


def test_from_dict_checks_type():
    with pytest.raises(ProtocolError):
        Mute.from_dict({"type": "stop-playback"})
    with pytest.raises(ProtocolError):
        Mute.from_dict("muted")


def test_constructing_an_invalid_message_raises():
    with pytest.raises(ProtocolError):
        WakeCandidate("not-a-session", "hey_jarvis", 0.9)
    with pytest.raises(ProtocolError):
        SatelliteStatus("has space")


def test_topic_unions_accept_only_their_messages():
    event = WakeCandidate(SID, "hey_jarvis", 0.9).to_json()
    command = SessionAccepted(SID).to_json()
    assert isinstance(wire.decode_satellite_event(event), WakeCandidate)
    assert isinstance(wire.decode_satellite_command(command), SessionAccepted)
    with pytest.raises(ProtocolError, match="not valid on this topic"):
        wire.decode_satellite_command(event)
    with pytest.raises(ProtocolError, match="not valid on this topic"):
        wire.decode_satellite_event(command)
    # audio-stop and error are valid in both directions
    for both in (AudioStop(SID), ErrorEvent("x", "y")):
        assert wire.decode_satellite_event(both.to_json()) == both
        assert wire.decode_satellite_command(both.to_json()) == both
    assert wire.decode_satellite_status(SatelliteStatus("k").to_json()) == SatelliteStatus("k")
    assert wire.decode_server_status(ServerStatus("s").to_json()) == ServerStatus("s")
    with pytest.raises(ProtocolError):
        wire.decode_server_status(SatelliteStatus("k").to_json())


def test_every_message_belongs_to_a_topic():
    from hearth.wire.events import SATELLITE_COMMAND_TYPES, SATELLITE_EVENT_TYPES

    _import_all_wire_modules()
    from hearth.wire.ha_topics import HA_COMMAND_TYPES, HA_EVENT_TYPES, HA_RETAINED_TYPES

    routed = set(SATELLITE_EVENT_TYPES) | set(SATELLITE_COMMAND_TYPES) | {SatelliteStatus, ServerStatus}
    routed |= set(HA_EVENT_TYPES) | set(HA_COMMAND_TYPES) | set(HA_RETAINED_TYPES)
    assert set(MESSAGE_TYPES.values()) == routed


def test_last_will_payloads_are_minimal():
    assert SatelliteStatus.offline("kitchen").to_dict() == {
        "type": "satellite-status",
        "satellite_id": "kitchen",
        "availability": "offline",
        "protocol": wire.PROTOCOL_VERSION,
    }
    assert not SatelliteStatus.offline("kitchen").online
    assert ServerStatus("house").online
