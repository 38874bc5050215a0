"""What the intents brain says: local answers, refusals and tool-result confirmations.

Everything here is plain text in, plain text out, and short: it is spoken. Replies are in
English whatever the matcher's language (Home Assistant's own response templates are Jinja,
which this server does not render).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

DIDNT_CATCH = "Sorry, I didn't catch that."
NEVERMIND = "Okay."
GENERIC_DONE = "Done."

_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December")
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

#: What the user asked for, in words, for "Sorry, I can't <this> here".
_INTENT_ACTIONS = {
    "HassTurnOn": "turn that on",
    "HassTurnOff": "turn that off",
    "HassToggle": "toggle that",
    "HassLightSet": "set lights",
    "HassGetState": "check that",
    "HassGetWeather": "check the weather",
    "HassClimateGetTemperature": "check the temperature",
    "HassClimateSetTemperature": "set the temperature",
    "HassClimateSetFanMode": "set the fan mode",
    "HassFanSetSpeed": "set the fan speed",
    "HassSetPosition": "set positions",
    "HassSetVolume": "set the volume",
    "HassSetVolumeRelative": "change the volume",
    "HassMediaPause": "pause media",
    "HassMediaUnpause": "resume media",
    "HassMediaNext": "skip tracks",
    "HassMediaPrevious": "go back a track",
    "HassMediaPlayerMute": "mute media",
    "HassMediaPlayerUnmute": "unmute media",
    "HassMediaSearchAndPlay": "play media",
    "HassVacuumStart": "start the vacuum",
    "HassVacuumReturnToBase": "send the vacuum home",
    "HassVacuumCleanArea": "clean that area",
    "HassLawnMowerStartMowing": "start the mower",
    "HassLawnMowerDock": "dock the mower",
    "HassListAddItem": "add to lists",
    "HassListCompleteItem": "complete list items",
    "HassListRemoveItem": "remove list items",
    "HassShoppingListAddItem": "add to the shopping list",
    "HassShoppingListCompleteItem": "complete shopping list items",
    "HassBroadcast": "broadcast",
}


def intent_action(intent: str) -> str:
    if intent in _INTENT_ACTIONS:
        return _INTENT_ACTIONS[intent]
    if "Timer" in intent:
        return "handle timers"
    return "do that"


def cannot(intent: str, reason: str, where: str = "here") -> str:
    """"Sorry, I can't turn that on here: <reason>." """
    return f"Sorry, I can't {intent_action(intent)} {where}: {_clause(reason)}."


# --------------------------------------------------------------------------- local answers


def time_reply(now: datetime) -> str:
    hour = now.hour % 12 or 12
    return f"It's {hour}:{now.minute:02d} {'AM' if now.hour < 12 else 'PM'}."


def date_reply(now: datetime) -> str:
    return (f"Today is {_WEEKDAYS[now.weekday()]}, {_MONTHS[now.month - 1]} "
            f"{_ordinal(now.day)}, {now.year}.")


def _ordinal(day: int) -> str:
    suffix = "th" if 11 <= day % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


# --------------------------------------------------------------------------- streaming


def word_groups(text: str, size: int = 2) -> Iterator[str]:
    """Split a reply into deltas of a few words; joined they give back `text` exactly."""
    pieces = re.findall(r"\S+\s*", text)
    lead = text[: len(text) - len(text.lstrip())]
    for start in range(0, len(pieces), size):
        chunk = "".join(pieces[start:start + size])
        if start == 0:
            chunk = lead + chunk
        yield chunk


# --------------------------------------------------------------------------- confirmations


def confirmation(name: str | None, arguments: str | None, output: str | None,
                 domain_of: Callable[[str], str | None] = lambda _name: None) -> str:
    """A short spoken reply to one executed function call.

    `output` is what the client sent back. Home Assistant's IntentTool returns
    `{"speech": {"plain": {"speech": ...}}, "response_type": ..., "data": {"success",
    "failed", ...}}`; its LLM integrations turn exceptions into `{"error": <type>,
    "error_text": <message>}`. Non-JSON output gets a plain "Done.".
    """
    try:
        result = json.loads(output) if output else None
    except (TypeError, ValueError):
        return GENERIC_DONE
    args = _json_object(arguments)

    if isinstance(result, Mapping):
        if "error" in result or "error_text" in result:
            return f"Sorry, I couldn't do that: {_clause(_error_reason(result))}."
        speech = _speech(result)
        if result.get("response_type") == "error":
            if speech.casefold().startswith("sorry"):
                return _sentence(speech)  # Home Assistant's own apology
            reason = speech or _error_code_reason(result.get("data"))
            return f"Sorry, I couldn't do that: {_clause(reason)}."
        if speech:
            return _sentence(speech)
        if result.get("success") is False:
            return "Sorry, that didn't work."
        data = result.get("data") if isinstance(result.get("data"), Mapping) else {}
        return _built_confirmation(name or "", args, data, domain_of)
    if result is None and output:
        return GENERIC_DONE
    return _built_confirmation(name or "", args, {}, domain_of) if name else GENERIC_DONE


def join_replies(replies: Sequence[str], limit: int = 3) -> str:
    """Several confirmations in one short reply (identical ones said once)."""
    unique = list(dict.fromkeys(r for r in replies if r))
    if not unique:
        return GENERIC_DONE
    if len(unique) > limit:
        return " ".join(unique[:limit]) + f" And {len(unique) - limit} more."
    return " ".join(unique)


def _json_object(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text) if text else {}
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _speech(result: Mapping[str, Any]) -> str:
    speech = result.get("speech")
    if isinstance(speech, str):
        return speech.strip()
    if isinstance(speech, Mapping):
        for kind in ("plain", "ssml"):
            part = speech.get(kind)
            if isinstance(part, Mapping) and isinstance(part.get("speech"), str):
                text = part["speech"].strip()
                if kind == "ssml":
                    text = re.sub(r"<[^>]+>", "", text).strip()
                if text:
                    return text
    return ""


# Home Assistant's MatchFailedError has no message: str() gives a dataclass repr.
_MATCH_REASON = re.compile(r"no_match_reason=<MatchFailedReason\.(\w+)")
_CONSTRAINT = re.compile(r"\b(name|area_name|floor_name|no_match_name)='((?:[^'\\]|\\.)*)'")
_MATCH_REASONS = {
    "NAME": "there's no device called {name}",
    "AREA": "there's no matching device in the {area}",
    "FLOOR": "there's no matching device on that floor",
    "INVALID_AREA": "there's no area called {area}",
    "INVALID_FLOOR": "there's no floor called {floor}",
    "DUPLICATE_NAME": "more than one device is called {name}",
    "DOMAIN": "{name} isn't that kind of device",
    "DEVICE_CLASS": "{name} isn't that kind of device",
    "FEATURE": "{name} doesn't support that",
    "STATE": "{name} isn't in the right state for that",
    "ASSISTANT": "{name} isn't exposed to the assistant",
    "MULTIPLE_TARGETS": "that matches more than one device",
}
_ERROR_TYPES = {
    "MatchFailedError": "I couldn't find that device",
    "NoStatesMatchedError": "I couldn't find that device",
    "IntentHandleError": "Home Assistant couldn't handle it",
    "Invalid": "the request wasn't valid",
    "MultipleInvalid": "the request wasn't valid",
    "ServiceNotFound": "that action isn't available",
    "ServiceValidationError": "the request wasn't valid",
    "TimeoutError": "it timed out",
}
#: Errors whose text is for developers ("expected str for dictionary value @ data['name']").
_TERSE_TYPES = frozenset({"Invalid", "MultipleInvalid"})
_ERROR_CODES = {
    "no_valid_targets": "there's no matching device",
    "no_intent_match": "I didn't understand the request",
    "failed_to_handle": "something went wrong",
    "unknown": "something went wrong",
}


def _error_reason(result: Mapping[str, Any]) -> str:
    error = result.get("error")
    text = result.get("error_text")
    if isinstance(error, Mapping):  # {"error": {"message": ...}} (OpenAI style)
        text = text or error.get("message")
        error = error.get("type") or error.get("code")
    error_type = error if isinstance(error, str) else ""
    if error_type in _TERSE_TYPES:
        return _ERROR_TYPES[error_type]
    if isinstance(text, str) and text.strip():
        text = text.strip()
        if (match := _MATCH_REASON.search(text)) is not None:
            return _match_failed_reason(match[1], text)
        if not text.startswith("<") and len(text) <= 160:
            return text
    if error_type in _ERROR_TYPES:
        return _ERROR_TYPES[error_type]
    if error_type and not re.fullmatch(r"[A-Z]\w*", error_type) and len(error_type) <= 160:
        return error_type  # {"error": "a message"}
    return "something went wrong"


def _match_failed_reason(reason: str, text: str) -> str:
    found: dict[str, str] = {}
    for key, value in _CONSTRAINT.findall(text):
        found.setdefault(key, value.replace("\\'", "'"))
    name = found.get("name") or found.get("no_match_name")
    area = found.get("area_name") or found.get("no_match_name")
    floor = found.get("floor_name") or found.get("no_match_name")
    template = _MATCH_REASONS.get(reason)
    if template is None:
        return "I couldn't find that device"
    values = {"name": spoken_name(name) if name else "that device",
              "area": area or "that area", "floor": floor or "that floor"}
    if "{name}" in template and not name and reason in {"NAME", "DUPLICATE_NAME"}:
        return "I couldn't find that device"
    return template.format(**values)


def _error_code_reason(data: Any) -> str:
    code = data.get("code") if isinstance(data, Mapping) else None
    return _ERROR_CODES.get(code, "something went wrong") if isinstance(code, str) else (
        "something went wrong")


# --------------------------------------------------------------------------- built replies

_ON_VERBS = {"lock": "Locked", "cover": "Opened", "valve": "Opened", "scene": "Activated",
             "script": "Started", "button": "Pressed", "input_button": "Pressed"}
_OFF_VERBS = {"lock": "Unlocked", "cover": "Closed", "valve": "Closed"}
_PLURALS = {"light": "lights", "fan": "fans", "switch": "switches", "cover": "covers",
            "lock": "locks", "media_player": "media players", "climate": "thermostats",
            "valve": "valves", "input_boolean": "switches", "vacuum": "vacuums"}
_SIMPLE = {
    "HassMediaPause": "Paused.",
    "HassMediaUnpause": "Resumed.",
    "HassMediaNext": "Skipped ahead.",
    "HassMediaPrevious": "Went back.",
    "HassMediaPlayerMute": "Muted.",
    "HassMediaPlayerUnmute": "Unmuted.",
    "HassVacuumStart": "Started the vacuum.",
    "HassVacuumReturnToBase": "Sent the vacuum home.",
    "HassLawnMowerStartMowing": "Started mowing.",
    "HassLawnMowerDock": "Sent the mower to its dock.",
    "HassStartTimer": "Timer started.",
    "HassCancelTimer": "Timer cancelled.",
    "HassCancelAllTimers": "Timers cancelled.",
    "HassPauseTimer": "Timer paused.",
    "HassUnpauseTimer": "Timer resumed.",
    "HassIncreaseTimer": "Timer updated.",
    "HassDecreaseTimer": "Timer updated.",
    "HassBroadcast": "Broadcast sent.",
}


def _built_confirmation(name: str, args: Mapping[str, Any], data: Mapping[str, Any],
                        domain_of: Callable[[str], str | None]) -> str:
    intent = name.rsplit("__", 1)[-1]  # "assist__HassTurnOn" (merged APIs) -> "HassTurnOn"
    success = _targets(data.get("success"))
    failed = _targets(data.get("failed"))
    domain = _first(args.get("domain")) or _target_domain(data.get("success"))
    if domain is None and isinstance(args.get("name"), str):
        domain = domain_of(args["name"])
    target = _target_phrase(args, domain, success)

    if intent == "HassTurnOn":
        text = f"{_ON_VERBS.get(domain or '', 'Turned on')} {target}".rstrip()
    elif intent == "HassTurnOff":
        text = f"{_OFF_VERBS.get(domain or '', 'Turned off')} {target}".rstrip()
    elif intent == "HassLightSet":
        text = f"Set {target or 'the lights'} to {_light_setting(args)}"
    elif intent == "HassSetPosition" and "position" in args:
        text = f"Set {target or 'it'} to {_number(args['position'])}%"
    elif intent == "HassFanSetSpeed" and "percentage" in args:
        text = f"Set {target or 'the fan'} to {_number(args['percentage'])}%"
    elif intent == "HassClimateSetTemperature" and "temperature" in args:
        text = f"Set the temperature to {_number(args['temperature'])} degrees"
    elif intent == "HassSetVolume" and "volume_level" in args:
        text = f"Set the volume to {_number(args['volume_level'])}%"
    elif intent in {"HassListAddItem", "HassShoppingListAddItem"} and args.get("item"):
        where = spoken_name(args["name"]) if isinstance(args.get("name"), str) else (
            "your shopping list")
        text = f"Added {args['item']} to {where}"
    elif intent in _SIMPLE:
        text = _SIMPLE[intent].rstrip(".")
    else:
        text = GENERIC_DONE.rstrip(".")

    if failed and not success:
        return f"Sorry, that didn't work for {_list_phrase(failed)}."
    if failed:
        return f"{text}, except {_list_phrase(failed)}."
    return f"{text}."


def _light_setting(args: Mapping[str, Any]) -> str:
    parts = []
    if "brightness" in args:
        parts.append(f"{_number(args['brightness'])}% brightness")
    if isinstance(args.get("color"), str):
        parts.append(args["color"])
    if "temperature" in args:
        parts.append(f"{_number(args['temperature'])} kelvin")
    return " and ".join(parts) or "that"


def _target_phrase(args: Mapping[str, Any], domain: str | None, success: list[str]) -> str:
    if isinstance(args.get("name"), str) and args["name"].strip():
        phrase = spoken_name(args["name"])
        if isinstance(args.get("area"), str):
            phrase += f" in {spoken_name(args['area'])}"
        return phrase
    device_class = _first(args.get("device_class"))
    kind = (f"{device_class}s" if device_class else _PLURALS.get(domain or "", "devices"))
    if isinstance(args.get("area"), str) and args["area"].strip():
        return f"the {kind} in {spoken_name(args['area'])}"
    if isinstance(args.get("floor"), str) and args["floor"].strip():
        floor = args["floor"].strip()
        where = f"on {spoken_name(floor)}" if "floor" in floor.casefold() else _lower(floor)
        return f"the {kind} {where}"
    if success:
        return _list_phrase(success)
    return ""


def _targets(items: Any) -> list[str]:
    """Entity names from IntentResponse `success` / `failed` lists."""
    if not isinstance(items, list):
        return []
    names = []
    for item in items:
        if isinstance(item, Mapping) and item.get("type", "entity") == "entity":
            name = item.get("name") or item.get("id")
            if isinstance(name, str) and name:
                names.append(name)
        elif isinstance(item, str):
            names.append(item)
    return names


def _target_domain(items: Any) -> str | None:
    if isinstance(items, list):
        for item in items:
            if isinstance(item, Mapping) and isinstance(item.get("id"), str) and (
                    "." in item["id"]):
                return item["id"].split(".", 1)[0]
    return None


def _list_phrase(names: list[str], limit: int = 2) -> str:
    spoken = [spoken_name(n) for n in dict.fromkeys(names)]
    if len(spoken) == 1:
        return spoken[0]
    if len(spoken) <= limit:
        return " and ".join(spoken)
    return f"{', '.join(spoken[:limit])} and {len(spoken) - limit} more"


def spoken_name(name: str) -> str:
    """"Kitchen Light" -> "the kitchen light"; keeps "TV" and "Marcelle's Lamp" readable."""
    name = " ".join(name.split())
    if not name:
        return name
    first = name.split(" ", 1)[0].casefold()
    lowered = _lower(name)
    if first in {"the", "my", "our", "your", "all"} or first.endswith(("'s", "’s", "s'")):
        return lowered
    return f"the {lowered}"


def _lower(name: str) -> str:
    """Lower-case title-case words only ("Living Room TV" -> "living room TV")."""
    words = []
    for i, word in enumerate(name.split(" ")):
        possessive = word.casefold().endswith(("'s", "’s"))
        if word[:1].isupper() and word[1:] == word[1:].lower() and not (
                possessive and i == 0):
            word = word.lower()
        words.append(word)
    return " ".join(words)


def _first(value: Any) -> str | None:
    if isinstance(value, list):
        value = value[0] if value else None
    return value if isinstance(value, str) and value else None


def _number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _clause(text: str) -> str:
    """A reason fit to follow a colon: trimmed, no final stop, lower-case start."""
    text = " ".join(str(text).split()).rstrip(".!?")
    words = text.split(" ")
    if words[0][:1].isupper() and words[0][1:].islower() and (
            len(words) == 1 or not words[1][:1].isupper()):
        text = text[0].lower() + text[1:]
    return text or "something went wrong"


def _sentence(text: str) -> str:
    text = " ".join(text.split())
    return text if text.endswith((".", "!", "?")) else f"{text}."
