"""The `intents` brain: Home Assistant's own local matcher (hassil + home-assistant-intents).

No language model. The last user utterance is matched against Home Assistant's sentence
templates with the names the request carries (tool-schema enums, the exposed-entities
overview in the instructions, the server's config). What comes out:

* an intent Home Assistant exposes as a tool (`HassTurnOn`, `HassLightSet`, ...) whose tool
  is in `request.tools` and allowed by `tool_choice` -> one `OutputFunctionCall` with the
  slots as arguments: entity and area display names (never entity ids), only the
  parameters the tool's schema declares, shaped to it (`domain: ["light"]` where the schema
  says array, `brightness: 50` where it says integer). A tool named `<api>__<Intent>`
  (Home Assistant's merged-API namespacing) is used when no exact name exists;
* an intent it can answer alone (the time, the date, "never mind", Home Assistant's fixed
  `HassRespond` answers) -> text, whatever the tools;
* function-call outputs at the end of the conversation (the client ran the call and asked
  for a response) -> a short confirmation built from Home Assistant's IntentTool result;
* anything else -> a short spoken "sorry" naming the reason. `tool_choice: "required"`
  cannot be honoured when nothing matches (this brain cannot invent a call): it answers
  with the sorry text, as it does for `tool_choice: "none"` when a tool would be needed.

Text is streamed as `OutputText` deltas of a few words.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
import time
import unicodedata
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from hassil import Intents, RecognizeResult, SlotList, TextSlotList, recognize_best
from home_assistant_intents import get_intents

from hearth.server.session.interfaces import (
    ContextItem,
    Declined,
    OutputFunctionCall,
    OutputText,
    ResponseRequest,
)
from hearth.server.tools.schema import schema_fallback

from .brain_intents_names import (
    HomeNames,
    merge_names,
    names_from_config,
    names_from_overview,
    names_from_tools,
    schema_enum,
    tool_name,
    tool_parameters,
)
from .brain_intents_replies import (
    DIDNT_CATCH,
    NEVERMIND,
    cannot,
    confirmation,
    date_reply,
    join_replies,
    time_reply,
    word_groups,
)
from .options import IntentsConfig

_LOGGER = logging.getLogger(__name__)

#: Intents answered here, never by a tool (Home Assistant keeps them from LLMs too).
_LOCAL_INTENTS = frozenset({"HassGetCurrentTime", "HassGetCurrentDate", "HassNevermind",
                            "HassRespond"})
#: Slots that pick targets: never dropped silently (the call would hit something else).
_TARGET_SLOTS = ("name", "area", "floor")
#: Words a transcript may add that the templates do not know.
_EXTRA_SKIP_WORDS = ("thank you", "thanks")
#: Whisper's non-speech annotations: "[BLANK_AUDIO]", "(upbeat music)", "*laughs*".
_NON_SPEECH = re.compile(r"\[[^\]]*\]|\([^)]*\)|\*[^*]*\*|♪")
_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+")
_SLOT_LIST_CACHE_SIZE = 16
#: Longest utterance matched: commands are short, and matching time grows with the text
#: (a 60 kB message took seconds of a worker every other session shares).
MAX_UTTERANCE_CHARS = 300
#: Sentences of a multi-sentence transcript tried on their own, last first.
MAX_SENTENCES = 3
_MISMATCH = object()


class IntentsBrain:
    """A brain that answers with Home Assistant's local intent matcher.

    Construction loads the language's intents and warms the matcher (~0.2 s, once).
    `respond` is an async generator of `OutputText` / `OutputFunctionCall`.
    """

    def __init__(self, config: IntentsConfig | None = None, *,
                 now: Callable[[], datetime] = datetime.now) -> None:
        self.config = config or IntentsConfig()
        data = get_intents(self.config.language)
        if not data:
            raise ValueError(
                f"home-assistant-intents has no sentences for language {self.config.language!r}")
        self._intents = Intents.from_dict(data)
        self._responses: dict[str, dict[str, str]] = (data.get("responses") or {}).get(
            "intents") or {}
        self._now = now
        self._config_names = names_from_config(self.config.names, self.config.areas,
                                               self.config.floors)
        self._slot_lists: OrderedDict[HomeNames, dict[str, SlotList]] = OrderedDict()
        # hassil parses templates and indexes slot lists lazily; one matcher at a time.
        self._lock = threading.Lock()
        self._warm = False
        self.warm_up()

    # ----------------------------------------------------------------- public API

    def warm_up(self) -> None:
        """Parse every sentence template now, so the first utterance is not slow."""
        if self._warm:
            return
        started = time.perf_counter()
        with self._lock:
            for intent in self._intents.intents.values():
                for data in intent.data:
                    _ = data.sentences  # a cached_property: parses the templates
        self.recognize("turn on the kitchen light", self._config_names)
        self._warm = True
        _LOGGER.debug("intents (%s) warmed in %.0f ms", self.config.language,
                      (time.perf_counter() - started) * 1000)

    def names_for(self, request: ResponseRequest) -> HomeNames:
        """Everything nameable for this request: tools, instructions, system items, config."""
        overviews = [names_from_overview(request.instructions)]
        overviews += [names_from_overview(item.text) for item in request.items
                      if item.type == "message" and item.role == "system"]
        return merge_names(names_from_tools(request.tools), *overviews, self._config_names)

    def recognize(self, text: str, names: HomeNames) -> RecognizeResult | None:
        """Match one utterance (blocking, a few ms); None when nothing matches."""
        lists = self._lists(names)
        for candidate in _candidates(text):
            with self._lock:
                result = recognize_best(
                    candidate,
                    self._intents,
                    slot_lists=lists,
                    skip_words=_EXTRA_SKIP_WORDS,
                    language=self.config.language,
                    best_slot_name="name",
                )
            if result is not None:
                return result
        return None

    async def respond(self, request: ResponseRequest) -> AsyncIterator[
            OutputText | OutputFunctionCall | Declined]:
        """Stream the reply to `request`: text deltas, one complete function call, or a decline."""
        answer = await self.answer(request)
        if isinstance(answer, (OutputFunctionCall, Declined)):
            yield answer
            return
        for delta in word_groups(answer):
            yield OutputText(delta)

    async def answer(self, request: ResponseRequest) -> str | OutputFunctionCall | Declined:
        """The whole reply at once: the text to say, the call to make, or why this brain cannot answer."""
        outputs = _trailing_outputs(request.items)
        if outputs:
            names = self.names_for(request)
            calls = {item.call_id: item for item in request.items
                     if item.type == "function_call" and item.call_id}
            replies = []
            for output in outputs:
                call = calls.get(output.call_id)
                replies.append(confirmation(
                    call.name if call else None, call.arguments if call else None,
                    output.output, names.known_domain))
            return join_replies(replies)

        text = _last_user_text(request.items)
        if not text:
            return Declined("nothing was said", DIDNT_CATCH)
        if len(text) > MAX_UTTERANCE_CHARS:
            return Declined(f"longer than a command ({len(text)} characters)", DIDNT_CATCH)
        # Reading names (YAML in the instructions) and matching take a few ms: off the loop.
        names, result = await asyncio.to_thread(self._understand, text, request)
        if result is None:
            _LOGGER.debug("no intent for %r", text)
            return Declined("no intent matched", DIDNT_CATCH)
        _LOGGER.debug("%r -> %s %s", text, result.intent.name,
                      {e.name: e.value for e in result.entities_list})
        return self._act(result, request, names)

    # ----------------------------------------------------------------- internals

    def _understand(self, text: str, request: ResponseRequest,
                    ) -> tuple[HomeNames, RecognizeResult | None]:
        names = self.names_for(request)
        return names, self.recognize(text, names)

    def _lists(self, names: HomeNames) -> dict[str, SlotList]:
        with self._lock:
            lists = self._slot_lists.get(names)
            if lists is not None:
                self._slot_lists.move_to_end(names)
                return lists
            lists = _build_slot_lists(names)
            self._slot_lists[names] = lists
            while len(self._slot_lists) > _SLOT_LIST_CACHE_SIZE:
                self._slot_lists.popitem(last=False)
            return lists

    def _act(self, result: RecognizeResult, request: ResponseRequest,
             names: HomeNames) -> str | OutputFunctionCall | Declined:
        intent = result.intent.name
        if intent in _LOCAL_INTENTS:
            local = self._local_answer(result)
            if local is not None:
                return local

        tools_allowed, forced = _tool_choice(request.tool_choice)
        if not tools_allowed:
            return _decline(intent, "tools are turned off", where="right now")
        tool = _find_tool(request.tools, intent)
        if tool is None:
            return _decline(intent, f"no {intent} tool is available")
        name = tool_name(tool) or intent
        if forced is not None and forced != name:
            return _decline(intent, f"I was asked to use {forced} instead")
        arguments, problem = build_arguments(result, tool_parameters(tool), names)
        if arguments is None:
            return _decline(intent, problem or "the tool doesn't fit")
        return OutputFunctionCall(name=name, arguments=_dumps(arguments))

    def _local_answer(self, result: RecognizeResult) -> str | None:
        intent = result.intent.name
        if intent == "HassGetCurrentTime":
            return time_reply(self._now())
        if intent == "HassGetCurrentDate":
            return date_reply(self._now())
        if intent == "HassNevermind":
            return NEVERMIND
        # HassRespond: Home Assistant's fixed answers ("hello", "who made you"), when plain.
        text = self._responses.get(intent, {}).get(result.response or "default", "")
        if text and "{" not in text:
            return text.strip()
        return None


# --------------------------------------------------------------------------- arguments


def build_arguments(result: RecognizeResult, parameters: Mapping[str, Any],
                    names: HomeNames) -> tuple[dict[str, Any] | None, str | None]:
    """Tool arguments from matched slots, shaped by the tool's JSON schema.

    Returns (arguments, None) or (None, why not). Every slot the sentence produced must fit a
    declared parameter: dropping one would widen the call ("the lights in the bedroom"
    without `domain` is everything in the bedroom). The entity's domain, when a source
    states it, is added where the tool takes `domain` ("prefer passing name and domain",
    as Home Assistant tells its LLMs).
    """
    slots: dict[str, Any] = {}
    for entity in result.entities_list:
        slots.setdefault(entity.name, entity.value)
    optional: dict[str, Any] = {}
    name = slots.get("name")
    context_domain = result.context.get("domain")
    if isinstance(context_domain, Mapping):
        context_domain = context_domain.get("value")
    if (isinstance(name, str) and "domain" not in slots and isinstance(context_domain, str)
            and context_domain in names.known_domains(name)):
        optional["domain"] = context_domain

    properties = parameters.get("properties")
    properties = properties if isinstance(properties, Mapping) else {}
    required = [r for r in parameters.get("required") or [] if isinstance(r, str)]
    arguments: dict[str, Any] = {}
    for key, value in slots.items():
        prop = properties.get(key)
        if not isinstance(prop, Mapping):
            return None, f"that tool takes no {key}"
        fitted = _fit(value, prop)
        if fitted is _MISMATCH:
            return None, f"that tool doesn't accept {value} as {key}"
        arguments[key] = fitted
    for key, value in optional.items():
        prop = properties.get(key)
        if isinstance(prop, Mapping) and (fitted := _fit(value, prop)) is not _MISMATCH:
            arguments[key] = fitted
    missing = fill_unfilled(arguments, required, properties)
    if missing is not None:
        return None, f"I don't know the {missing}"
    order = {key: i for i, key in enumerate(properties)}
    return dict(sorted(arguments.items(), key=lambda kv: order.get(kv[0], len(order)))), None


def fill_unfilled(arguments: dict[str, Any], required: Sequence[str],
                  properties: Mapping[str, Any]) -> str | None:
    """Give each required parameter the sentence left empty its default (or null).

    Strict tool schemas (openai-agents, @openai/agents-realtime) require every parameter
    and mark the optional ones with a default or a null type; without this no call could
    be made from them. Returns the first required parameter that cannot be filled, or None.
    """
    for key in required:
        if key in arguments:
            continue
        fillable, value = schema_fallback(properties.get(key))
        if not fillable:
            return key
        arguments[key] = value
    return None


def _fit(value: Any, schema: Mapping[str, Any]) -> Any:
    types = _types(schema)
    scalar = {"string", "integer", "number", "boolean"}
    if "array" in types and not (types & scalar) and not isinstance(value, list):
        items = _array_items(schema)
        fitted = _fit_scalar(value, items)
        return _MISMATCH if fitted is _MISMATCH else [fitted]
    return _fit_scalar(value, schema)


def _fit_scalar(value: Any, schema: Mapping[str, Any]) -> Any:
    types = _types(schema)
    if isinstance(value, float) and value.is_integer() and (
            "integer" in types or "number" in types or "string" in types or not types):
        value = int(value)
    if "string" in types and not (types & {"integer", "number"}) and isinstance(
            value, int | float) and not isinstance(value, bool):
        value = str(value)
    enum = schema_enum(schema)
    if enum and isinstance(value, str) and value not in enum:
        folded = {option.casefold(): option for option in enum}
        return folded.get(value.casefold(), _MISMATCH)
    return value


def _types(schema: Mapping[str, Any]) -> set[str]:
    found: set[str] = set()
    kind = schema.get("type")
    if isinstance(kind, str):
        found.add(kind)
    elif isinstance(kind, list):
        found.update(k for k in kind if isinstance(k, str))
    for key in ("anyOf", "oneOf"):
        for sub in schema.get(key) or []:
            if isinstance(sub, Mapping):
                found |= _types(sub)
    found.discard("null")
    return found


def _array_items(schema: Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(schema.get("items"), Mapping):
        return schema["items"]
    for key in ("anyOf", "oneOf"):
        for sub in schema.get(key) or []:
            if isinstance(sub, Mapping) and isinstance(sub.get("items"), Mapping):
                return sub["items"]
    return {}


def _dumps(arguments: Mapping[str, Any]) -> str:
    return json.dumps(arguments, ensure_ascii=False)


# --------------------------------------------------------------------------- request reading


def _trailing_outputs(items: Sequence[ContextItem]) -> list[ContextItem]:
    """The function_call_output items that end the conversation, in order."""
    outputs: list[ContextItem] = []
    for item in reversed(items):
        if item.type != "function_call_output":
            break
        outputs.append(item)
    return outputs[::-1]


def _last_user_text(items: Sequence[ContextItem]) -> str:
    for item in reversed(items):
        if item.type == "message" and item.role == "user":
            if len(item.text) > 4 * MAX_UTTERANCE_CHARS:  # no command: not worth normalizing
                return item.text[: MAX_UTTERANCE_CHARS + 1]
            return normalize_utterance(item.text)
    return ""


def normalize_utterance(text: str) -> str:
    """Tidy typed text or a Whisper transcript: "Turn on the kitchen light." works."""
    text = unicodedata.normalize("NFKC", text or "")
    text = text.translate(str.maketrans({"’": "'", "‘": "'", "“": '"', "”": '"', "…": "."}))
    text = _NON_SPEECH.sub(" ", text)
    text = " ".join(text.split())
    return text.strip(" \"'.,!?;:-")


def _candidates(text: str) -> list[str]:
    """The utterance, then (for a multi-sentence transcript) each sentence, last first."""
    candidates = [text]
    sentences = [s.strip(" \"'.,!?;:-") for s in _SENTENCE_END.split(text)]
    sentences = [s for s in sentences if s]
    if len(sentences) > 1:
        candidates += sentences[::-1][:MAX_SENTENCES]
    return candidates


def _tool_choice(choice: str | Mapping[str, Any] | None) -> tuple[bool, str | None]:
    """(tools allowed at all, the one function forced or None)."""
    if isinstance(choice, Mapping):
        if choice.get("type") == "function":
            name = choice.get("name")
            if name is None and isinstance(choice.get("function"), Mapping):
                name = choice["function"].get("name")
            return True, name if isinstance(name, str) else None
        return True, str(choice.get("server_label") or choice.get("type") or "another tool")
    return choice != "none", None


def _find_tool(tools: Sequence[Mapping[str, Any]], intent: str) -> Mapping[str, Any] | None:
    functions = [t for t in tools if isinstance(t, Mapping)
                 and t.get("type", "function") == "function"]
    for tool in functions:
        if tool_name(tool) == intent:
            return tool
    namespaced = [t for t in functions if (tool_name(t) or "").endswith(f"__{intent}")]
    return namespaced[0] if len(namespaced) == 1 else None


# --------------------------------------------------------------------------- slot lists


def _build_slot_lists(names: HomeNames) -> dict[str, SlotList]:
    """hassil lists `name` (with a `domain` context per value), `area`, `floor`.

    All three always exist (hassil raises MissingListError for a missing one). Values are
    never templates: "Lamp (left)" is a name, not an optional word. Each list's index is
    built here, under the brain's lock, rather than lazily inside a matcher thread.
    """
    name_values = []
    for entity in names.entities:
        for domain in entity.match_domains():
            for spoken in (entity.name, *entity.aliases):
                name_values.append((spoken, entity.name, {"domain": domain}))
    lists: dict[str, SlotList] = {
        "name": TextSlotList.from_tuples(name_values, allow_template=False, name="name"),
        "area": TextSlotList.from_tuples(
            [(spoken, area.name) for area in names.areas for spoken in (area.name, *area.aliases)],
            allow_template=False, name="area"),
        "floor": TextSlotList.from_tuples(
            [(spoken, floor.name) for floor in names.floors
             for spoken in (floor.name, *floor.aliases)],
            allow_template=False, name="floor"),
    }
    for slot_list in lists.values():
        slot_list.get_candidates("a")
    return lists


def _decline(intent: str, reason: str, where: str = "here") -> Declined:
    """A typed "not mine" whose reply names the reason, for when no other brain answers."""
    return Declined(f"{intent}: {reason}", cannot(intent, reason, where=where))
