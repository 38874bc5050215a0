"""The intents brain with the real hassil + home-assistant-intents (no fakes of the matcher)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest

from hearth.server.engines.cascade.brain_intents import (
    IntentsBrain,
    IntentsConfig,
    normalize_utterance,
)
from hearth.server.engines.cascade.brain_intents_names import (
    KnownEntity,
    KnownName,
    guess_domains,
    names_from_config,
    names_from_overview,
    names_from_tools,
)
from hearth.server.engines.cascade.brain_intents_replies import confirmation, word_groups
from hearth.server.session.interfaces import (
    Declined,
    ContextItem,
    OutputFunctionCall,
    OutputText,
    ResponseRequest,
)

FIXED_NOW = datetime(2025, 3, 4, 15, 5, 30)

# The parameter schemas Home Assistant's Assist API gives its intent tools (voluptuous ->
# JSON schema): targets are strings, `domain` and `device_class` are arrays.
_TARGET_PROPS: dict[str, Any] = {
    "name": {"type": "string"},
    "area": {"type": "string"},
    "floor": {"type": "string"},
    "domain": {"type": "array", "items": {"type": "string"}},
    "device_class": {"type": "array", "items": {"type": "string",
                                                 "enum": ["tv", "speaker", "blind", "garage"]}},
}


def ha_tool(name: str, extra: dict[str, Any] | None = None,
            props: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "type": "function",
        "name": name,
        "description": f"Execute Home Assistant {name} intent",
        "parameters": {"type": "object",
                       "properties": {**(_TARGET_PROPS if props is None else props),
                                      **(extra or {})},
                       "required": []},
    }


HA_TOOLS = [
    ha_tool("HassTurnOn"),
    ha_tool("HassTurnOff"),
    ha_tool("HassLightSet", {
        "color": {"type": "string"},
        "temperature": {"type": "integer", "minimum": 0},
        "brightness": {"type": "integer", "minimum": 0, "maximum": 100},
    }),
    {"type": "function", "name": "GetDateTime", "description": "Current date and time",
     "parameters": {"type": "object", "properties": {}}},
]

OVERVIEW = """When controlling Home Assistant always call the intent tools. Use HassTurnOn \
to lock and HassTurnOff to unlock a lock.
Static Context: An overview of the areas and the devices in this smart home:
- names: Kitchen Light
  domain: light
  areas: Kitchen
- names: Living Room Lamp, Reading Lamp
  domain: light
  areas: Living Room, Lounge
- names: Bedroom Ceiling
  domain: light
  areas: Bedroom
- names: Front Door
  domain: lock
- names: 'TV'
  domain: media_player
  areas: Living Room
"""


def user(text: str, item_id: str = "item_user") -> ContextItem:
    return ContextItem(type="message", id=item_id, role="user", text=text)


def request(items: list[ContextItem] | str, *, tools: list[dict[str, Any]] | None = None,
            instructions: str = "", tool_choice: str | dict[str, Any] = "auto",
            ) -> ResponseRequest:
    if isinstance(items, str):
        items = [user(items)]
    return ResponseRequest(
        instructions=instructions,
        items=items,
        tools=HA_TOOLS if tools is None else tools,
        tool_choice=tool_choice,
        output_modalities=["audio"],
        voice="joe",
        speed=1.0,
    )


async def collect(brain: IntentsBrain, req: ResponseRequest) -> list[Any]:
    return [chunk async for chunk in brain.respond(req)]


async def call_of(brain: IntentsBrain, req: ResponseRequest) -> tuple[str, dict[str, Any]]:
    chunks = await collect(brain, req)
    assert len(chunks) == 1 and isinstance(chunks[0], OutputFunctionCall), chunks
    return chunks[0].name, json.loads(chunks[0].arguments)


async def text_of(brain: IntentsBrain, req: ResponseRequest) -> str:
    chunks = await collect(brain, req)
    if len(chunks) == 1 and isinstance(chunks[0], Declined):  # what the engine speaks for a decline
        return chunks[0].reply
    assert chunks and all(isinstance(c, OutputText) for c in chunks), chunks
    return "".join(c.delta for c in chunks)


@pytest.fixture(scope="module")
def brain() -> IntentsBrain:
    return IntentsBrain(IntentsConfig(), now=lambda: FIXED_NOW)


# --------------------------------------------------------------------------- function calls


async def test_kitchen_light_from_tool_enum_names(brain: IntentsBrain) -> None:
    props = {**_TARGET_PROPS,
             "name": {"type": "string", "enum": ["Kitchen Light", "Living Room Lamp"]},
             "area": {"anyOf": [{"type": "string", "enum": ["Kitchen", "Living Room"]}]}}
    tools = [ha_tool("HassTurnOn", props=props), ha_tool("HassTurnOff", props=props)]
    # Whisper-style transcript: capital letter and final stop.
    assert await call_of(brain, request("Turn on the kitchen light.", tools=tools)) == (
        "HassTurnOn", {"name": "Kitchen Light"})
    # The entity, not the "Kitchen" area with the light domain.
    assert await call_of(brain, request("turn off kitchen light", tools=tools)) == (
        "HassTurnOff", {"name": "Kitchen Light"})


async def test_kitchen_light_from_the_overview_in_instructions(brain: IntentsBrain) -> None:
    assert await call_of(brain, request("Turn on the kitchen light.", instructions=OVERVIEW)) == (
        "HassTurnOn", {"name": "Kitchen Light", "domain": ["light"]})


async def test_overview_in_a_system_item_and_aliases(brain: IntentsBrain) -> None:
    items = [ContextItem(type="message", id="sys", role="system", text=OVERVIEW),
             user("turn off the reading lamp")]
    # An alias is matched; the display name is what the call carries.
    assert await call_of(brain, request(items)) == (
        "HassTurnOff", {"name": "Living Room Lamp", "domain": ["light"]})


async def test_kitchen_light_from_config_names() -> None:
    typed = IntentsBrain(IntentsConfig(names=[{"name": "Kitchen Light", "domain": "light"}]))
    assert await call_of(typed, request("turn on the kitchen light")) == (
        "HassTurnOn", {"name": "Kitchen Light", "domain": ["light"]})
    # A bare name: its domain is only guessed (from "light"), so the call does not claim one.
    bare = IntentsBrain(IntentsConfig(names=["Kitchen Light"], areas=["Kitchen"]))
    assert await call_of(bare, request("turn on the kitchen light")) == (
        "HassTurnOn", {"name": "Kitchen Light"})


async def test_area_and_domain(brain: IntentsBrain) -> None:
    assert await call_of(brain, request("turn off the lights in the bedroom",
                                        instructions=OVERVIEW)) == (
        "HassTurnOff", {"area": "Bedroom", "domain": ["light"]})
    # An area alias from the overview resolves to the area's display name.
    assert await call_of(brain, request("turn on the lights in the lounge",
                                        instructions=OVERVIEW)) == (
        "HassTurnOn", {"area": "Living Room", "domain": ["light"]})


async def test_area_from_config_and_floor() -> None:
    configured = IntentsBrain(IntentsConfig(areas=["Bedroom"], floors=["Upstairs"]))
    assert await call_of(configured, request("turn off the lights in the bedroom")) == (
        "HassTurnOff", {"area": "Bedroom", "domain": ["light"]})
    assert await call_of(configured, request("turn on the lights upstairs")) == (
        "HassTurnOn", {"floor": "Upstairs", "domain": ["light"]})


@pytest.mark.parametrize("spoken", ["set the living room lamp to 50%",
                                    "Set the living room lamp to fifty percent."])
async def test_light_brightness(brain: IntentsBrain, spoken: str) -> None:
    assert await call_of(brain, request(spoken, instructions=OVERVIEW)) == (
        "HassLightSet", {"name": "Living Room Lamp", "domain": ["light"], "brightness": 50})


async def test_lock_and_unlock(brain: IntentsBrain) -> None:
    assert await call_of(brain, request("lock the front door", instructions=OVERVIEW)) == (
        "HassTurnOn", {"name": "Front Door", "domain": ["lock"]})
    assert await call_of(brain, request("unlock the front door", instructions=OVERVIEW)) == (
        "HassTurnOff", {"name": "Front Door", "domain": ["lock"]})


async def test_only_declared_parameters(brain: IntentsBrain) -> None:
    name_only = [ha_tool("HassTurnOn", props={"name": {"type": "string"}})]
    assert await call_of(brain, request("turn on the kitchen light", tools=name_only,
                                        instructions=OVERVIEW)) == (
        "HassTurnOn", {"name": "Kitchen Light"})
    # Dropping `domain` from an area command would switch off the whole room: refuse.
    area_only = [ha_tool("HassTurnOff", props={"area": {"type": "string"}})]
    text = await text_of(brain, request("turn off the lights in the bedroom", tools=area_only,
                                        instructions=OVERVIEW))
    assert text == "Sorry, I can't turn that off here: that tool takes no domain."


async def test_namespaced_tool_from_merged_apis(brain: IntentsBrain) -> None:
    tools = [ha_tool("assist__HassTurnOn")]
    assert await call_of(brain, request("turn on the kitchen light", tools=tools,
                                        instructions=OVERVIEW)) == (
        "assist__HassTurnOn", {"name": "Kitchen Light", "domain": ["light"]})


# --------------------------------------------------------------------------- tool_choice


async def test_tool_choice_none_never_calls(brain: IntentsBrain) -> None:
    text = await text_of(brain, request("turn on the kitchen light", instructions=OVERVIEW,
                                        tool_choice="none"))
    assert text == "Sorry, I can't turn that on right now: tools are turned off."


async def test_tool_choice_forced_function(brain: IntentsBrain) -> None:
    forced = {"type": "function", "name": "HassTurnOn"}
    assert await call_of(brain, request("turn on the kitchen light", instructions=OVERVIEW,
                                        tool_choice=forced)) == (
        "HassTurnOn", {"name": "Kitchen Light", "domain": ["light"]})
    other = {"type": "function", "name": "HassTurnOff"}
    text = await text_of(brain, request("turn on the kitchen light", instructions=OVERVIEW,
                                        tool_choice=other))
    assert text == "Sorry, I can't turn that on here: I was asked to use HassTurnOff instead."


async def test_tool_choice_required_without_match_says_sorry(brain: IntentsBrain) -> None:
    # It cannot invent a call: "required" with nothing matched is a spoken sorry.
    text = await text_of(brain, request("make me a sandwich", tool_choice="required"))
    assert text == "Sorry, I didn't catch that."
    assert await call_of(brain, request("turn on the kitchen light", instructions=OVERVIEW,
                                        tool_choice="required")) == (
        "HassTurnOn", {"name": "Kitchen Light", "domain": ["light"]})


# --------------------------------------------------------------------------- spoken answers


async def test_time_is_answered_without_tools(brain: IntentsBrain) -> None:
    chunks = await collect(brain, request("What time is it?", tools=[]))
    assert all(isinstance(c, OutputText) for c in chunks)
    assert len(chunks) > 1  # streamed as word groups
    assert "".join(c.delta for c in chunks) == "It's 3:05 PM."


async def test_date_and_nevermind(brain: IntentsBrain) -> None:
    assert await text_of(brain, request("what's the date today", tools=[])) == (
        "Today is Tuesday, March 4th, 2025.")
    assert await text_of(brain, request("Never mind.")) == "Okay."


async def test_midnight_and_noon() -> None:
    midnight = IntentsBrain(now=lambda: datetime(2025, 1, 1, 0, 7))
    assert await text_of(midnight, request("what time is it")) == "It's 12:07 AM."
    noon = IntentsBrain(now=lambda: datetime(2025, 1, 1, 12, 0))
    assert await text_of(noon, request("what time is it")) == "It's 12:00 PM."


@pytest.mark.parametrize("spoken", ["make me a sandwich", "", "   ", "[BLANK_AUDIO]", "..."])
async def test_unmatched_or_empty_says_sorry(brain: IntentsBrain, spoken: str) -> None:
    assert await text_of(brain, request(spoken, instructions=OVERVIEW)) == (
        "Sorry, I didn't catch that.")


async def test_no_user_message_says_sorry(brain: IntentsBrain) -> None:
    assert await text_of(brain, request([])) == "Sorry, I didn't catch that."


async def test_matched_intent_without_tool(brain: IntentsBrain) -> None:
    text = await text_of(brain, request("turn on the kitchen light", tools=[],
                                        instructions=OVERVIEW))
    assert text == "Sorry, I can't turn that on here: no HassTurnOn tool is available."
    # Home Assistant never exposes HassGetState to LLMs.
    text = await text_of(brain, request("is the front door locked", instructions=OVERVIEW))
    assert text == "Sorry, I can't check that here: no HassGetState tool is available."


async def test_works_with_no_names_at_all(brain: IntentsBrain) -> None:
    # area/floor lists must exist even when empty, or hassil raises MissingListError.
    assert await text_of(brain, request("turn on the kitchen light", tools=[])) == (
        "Sorry, I didn't catch that.")


# --------------------------------------------------------------------------- confirmations

_HA_DONE = {
    "speech": {},
    "response_type": "action_done",
    "data": {
        "targets": [],
        "success": [{"name": "Kitchen Light", "type": "entity", "id": "light.kitchen"}],
        "failed": [],
    },
}
_HA_MATCH_FAILED = (
    "<MatchFailedError result=MatchTargetsResult(is_match=False, "
    "no_match_reason=<MatchFailedReason.NAME: 1>, states=[], no_match_name=None, areas=[], "
    "floors=[]), constraints=MatchTargetsConstraints(name='Kitchen Lamp', area_name=None, "
    "floor_name=None, domains={'light'}, device_classes=None, features=None, states=None, "
    "assistant='conversation', allow_duplicate_names=False, single_target=False), "
    "preferences=MatchTargetsPreferences(area_id=None, floor_id=None)>"
)


def after_call(name: str, arguments: dict[str, Any], output: str) -> list[ContextItem]:
    return [
        user("turn on the kitchen light", "item_1"),
        ContextItem(type="function_call", id="item_2", name=name,
                    arguments=json.dumps(arguments), call_id="call_1"),
        ContextItem(type="function_call_output", id="item_3", call_id="call_1", output=output),
    ]


async def test_confirmation_from_home_assistant_result(brain: IntentsBrain) -> None:
    items = after_call("HassTurnOn", {"name": "Kitchen Light", "domain": ["light"]},
                       json.dumps(_HA_DONE))
    chunks = await collect(brain, request(items, instructions=OVERVIEW))
    assert all(isinstance(c, OutputText) for c in chunks) and len(chunks) > 1
    assert "".join(c.delta for c in chunks) == "Turned on the kitchen light."


async def test_confirmation_uses_home_assistant_speech(brain: IntentsBrain) -> None:
    said = {**_HA_DONE, "speech": {"plain": {"speech": "Turned on the light",
                                              "extra_data": None}}}
    items = after_call("HassTurnOn", {"name": "Kitchen Light"}, json.dumps(said))
    assert await text_of(brain, request(items)) == "Turned on the light."


async def test_confirmation_from_error_output(brain: IntentsBrain) -> None:
    items = after_call("HassTurnOn", {"name": "Kitchen Lamp"},
                       json.dumps({"error": "MatchFailedError", "error_text": _HA_MATCH_FAILED}))
    assert await text_of(brain, request(items)) == (
        "Sorry, I couldn't do that: there's no device called the kitchen lamp.")
    items = after_call("HassTurnOn", {"name": "Kitchen Light"},
                       json.dumps({"error": "HomeAssistantError",
                                   "error_text": "Service light.turn_on timed out."}))
    assert await text_of(brain, request(items)) == (
        "Sorry, I couldn't do that: service light.turn_on timed out.")


async def test_confirmation_of_error_response_and_non_json(brain: IntentsBrain) -> None:
    error = {"speech": {}, "response_type": "error", "data": {"code": "no_valid_targets"}}
    items = after_call("HassTurnOn", {"name": "Kitchen Light"}, json.dumps(error))
    assert await text_of(brain, request(items)) == (
        "Sorry, I couldn't do that: there's no matching device.")
    items = after_call("HassTurnOn", {"name": "Kitchen Light"}, "ok")
    assert await text_of(brain, request(items)) == "Done."


def test_confirmation_wording() -> None:
    def done(success: list[str], failed: list[str] = ()) -> str:
        return json.dumps({"speech": {}, "response_type": "action_done", "data": {
            "success": [{"name": n, "type": "entity", "id": i} for n, i in success],
            "failed": [{"name": n, "type": "entity", "id": i} for n, i in failed]}})

    assert confirmation("HassTurnOn", '{"name": "Front Door"}',
                        done([("Front Door", "lock.front_door")])) == "Locked the front door."
    assert confirmation("HassTurnOff", '{"area": "Bedroom", "domain": ["light"]}',
                        done([("Bed Lamp", "light.a")], [("Desk Lamp", "light.b")])) == (
        "Turned off the lights in the bedroom, except the desk lamp.")
    assert confirmation("HassTurnOn", '{"name": "Kitchen Light"}',
                        done([], [("Kitchen Light", "light.kitchen")])) == (
        "Sorry, that didn't work for the kitchen light.")
    assert confirmation("HassLightSet", '{"name": "Living Room Lamp", "brightness": 50}',
                        done([("Living Room Lamp", "light.lamp")])) == (
        "Set the living room lamp to 50% brightness.")
    assert confirmation("HassTurnOn", '{"name": "Living Room TV"}', "{}") == (
        "Turned on the living room TV.")


# --------------------------------------------------------------------------- names


def test_overview_parsing() -> None:
    text = (
        "Some instructions.\n"
        "Static Context: An overview of the areas and the devices in this smart home:\n"
        "- names: 'TV'\n"
        "  domain: media_player\n"
        "  areas: Living Room, Lounge\n"
        "- names: \"Marcelle's Lamp, Reading Lamp\"\n"
        "  domain: light\n"
        "  state: 'on'\n"
        "  attributes:\n"
        "    names: not an entity\n"
        "- names: Kitchen Light\n"
        "  domain: light\n"
        "Text that follows the list.\n"
        "light.attic:\n"  # the older shape: a mapping keyed by entity id
        "  names: Attic Bulb\n"
        "  areas: Attic\n"
    )
    names = names_from_overview(text)
    assert names.entities == (
        KnownEntity("TV", (), "media_player", ("Living Room",)),
        KnownEntity("Marcelle's Lamp", ("Reading Lamp",), "light", ()),
        KnownEntity("Kitchen Light", (), "light", ()),
        KnownEntity("Attic Bulb", (), "light", ("Attic",)),
    )
    assert names.areas == (KnownName("Living Room", ("Lounge",)), KnownName("Attic"))
    assert names_from_overview("no list here").entities == ()


def test_tool_enums_anywhere_in_the_schema() -> None:
    tools = [{
        "type": "function", "name": "Control",
        "parameters": {"type": "object", "properties": {
            "name": {"anyOf": [{"type": "string", "enum": ["Kitchen Light"]}, {"type": "null"}]},
            "area": {"type": "array", "items": {"type": "string", "enum": ["Kitchen"]}},
            "target": {"type": "object", "properties": {
                "floor": {"type": "string", "enum": ["Upstairs"]}}},
        }},
    }, {"type": "function", "function": {"name": "todo_get_items", "parameters": {
        "type": "object", "properties": {"todo_list": {"type": "string",
                                                       "enum": ["Shopping List"]}}}}}]
    names = names_from_tools(tools)
    assert names.entities == (KnownEntity("Shopping List", domain="todo"),
                              KnownEntity("Kitchen Light"))
    assert names.areas == (KnownName("Kitchen"),)
    assert names.floors == (KnownName("Upstairs"),)


def test_config_names() -> None:
    names = names_from_config(
        ["Hall Light", {"names": "Desk Lamp, Work Lamp", "entity_id": "light.desk",
                        "area": "Office"}],
        ["Garden"], ["Ground Floor"])
    assert names.entities == (KnownEntity("Desk Lamp", ("Work Lamp",), "light", ("Office",)),
                              KnownEntity("Hall Light"))
    assert [a.name for a in names.areas] == ["Garden", "Office"]
    assert [f.name for f in names.floors] == ["Ground Floor"]


def test_config_entries_as_objects() -> None:
    @dataclass(frozen=True)
    class EntityName:  # the shape of the server config's entity entries
        name: str
        domain: str | None = None
        areas: tuple[str, ...] = ()

    names = names_from_config((EntityName("Porch Light", "light", ("Porch",)),), (), ())
    assert names.entities == (KnownEntity("Porch Light", (), "light", ("Porch",)),)
    assert names.areas == (KnownName("Porch"),)


def test_domain_guesses_for_names_without_one() -> None:
    assert guess_domains("Garage Light") == ("light",)
    assert guess_domains("Garage Door") == ("cover",)
    assert guess_domains("Front Door") == ("lock",)
    assert guess_domains("Living Room TV") == ("media_player",)
    assert guess_domains("Espresso Machine") == ("light", "switch")


async def test_guessed_domains_keep_lock_semantics(brain: IntentsBrain) -> None:
    props = {"name": {"type": "string", "enum": ["Front Door", "Garage Door"]}}
    tools = [ha_tool("HassTurnOn", props=props), ha_tool("HassTurnOff", props=props)]
    assert await call_of(brain, request("lock the front door", tools=tools)) == (
        "HassTurnOn", {"name": "Front Door"})
    assert await call_of(brain, request("open the garage door", tools=tools)) == (
        "HassTurnOn", {"name": "Garage Door"})
    # "Front Door" is guessed a lock: "open" (a cover verb) must not reach HassTurnOn.
    assert await text_of(brain, request("open the front door", tools=tools)) == (
        "Sorry, I didn't catch that.")


def test_slot_lists_are_cached_per_names(brain: IntentsBrain) -> None:
    first = brain._lists(brain.names_for(request("x", instructions=OVERVIEW)))
    again = brain._lists(brain.names_for(request("y", instructions=OVERVIEW)))
    other = brain._lists(brain.names_for(request("y")))
    assert first is again and first is not other
    assert set(first) == {"name", "area", "floor"}


def test_normalize_and_word_groups() -> None:
    assert normalize_utterance("  Turn on the kitchen light.  ") == "Turn on the kitchen light"
    assert normalize_utterance("[BLANK_AUDIO]") == ""
    assert normalize_utterance("(music) What’s the date?") == "What's the date"
    groups = list(word_groups("Turned on the kitchen light."))
    assert groups == ["Turned on ", "the kitchen ", "light."]
    assert "".join(word_groups("  two  spaces ")) == "  two  spaces "


def test_unknown_language_fails_clearly() -> None:
    with pytest.raises(ValueError, match="xx"):
        IntentsBrain(IntentsConfig(language="xx"))


async def test_no_match_is_a_typed_decline_with_the_reason(brain: IntentsBrain) -> None:
    """Brains compose on the decline's type, not on its words."""
    chunks = await collect(brain, request("tell me a joke"))
    assert len(chunks) == 1 and isinstance(chunks[0], Declined)
    assert chunks[0].reason == "no intent matched"
    missing = await collect(brain, request("turn on the kitchen light", tools=[], instructions=OVERVIEW))
    assert isinstance(missing[0], Declined) and "no HassTurnOn tool" in missing[0].reason


async def test_a_huge_message_is_declined_at_once(brain: IntentsBrain) -> None:
    """Matching cost grows with the text; a 60 kB message is no command and must not tie up a worker."""
    chunks = await collect(brain, request("turn on the kitchen light. " * 2000, instructions=OVERVIEW))
    assert len(chunks) == 1 and isinstance(chunks[0], Declined) and "longer than a command" in chunks[0].reason
