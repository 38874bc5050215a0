"""The `auto` brain: Home Assistant's intents first, the LLM for whatever they decline.

Device commands, the time and the date are answered by the intent matcher in milliseconds
without an upstream request; anything it declines (a typed `Declined`, never a string
match) goes to the LLM brain with the same request, tools included. The decline's reason
is logged at debug level. The results of calls the LLM made (a client's `get_weather`, a
Home Assistant tool the session ran) go back to the LLM, which knows why it asked.

Which brain answers can be narrowed per satellite (`engine.brain.satellites`) and per
response (`metadata: {"hearth_brain": "intents" | "llm" | "auto"}` on `response.create`,
for a Realtime client that wants one path for a whole session: it sends it with each
response).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping
from typing import Literal

from hearth.server.session.interfaces import Declined, OutputFunctionCall, ResponseRequest

from .brain import Brain, BrainEvent

_LOGGER = logging.getLogger(__name__)

Route = Literal["auto", "intents", "llm"]
ROUTES: tuple[Route, ...] = ("auto", "intents", "llm")
#: Response metadata key that picks the route for one response.
METADATA_KEY = "hearth_brain"
#: Call ids of the LLM's recent calls that are remembered (their results go back to it).
_REMEMBERED_CALLS = 1024


class AutoBrain:
    """Routes each request to the intents brain, the LLM brain, or one then the other."""

    def __init__(self, intents: Brain, llm: Brain, *, route: Route = "auto",
                 satellites: Mapping[str, Route] | None = None,
                 _llm_calls: OrderedDict[str, None] | None = None) -> None:
        self.intents = intents
        self.llm = llm
        self.route = route
        self.satellites = dict(satellites or {})
        self._llm_calls: OrderedDict[str, None] = _llm_calls if _llm_calls is not None else OrderedDict()

    def for_satellite(self, satellite_id: str | None) -> AutoBrain:
        """The brain a satellite's sessions use (its configured route, else this one's)."""
        route = self.satellites.get(satellite_id or "", self.route)
        if route == self.route:
            return self
        return AutoBrain(self.intents, self.llm, route=route, _llm_calls=self._llm_calls)

    async def close(self) -> None:
        close = getattr(self.llm, "close", None)
        if close is not None:
            await close()

    def route_for(self, request: ResponseRequest) -> Route:
        wanted = (request.metadata or {}).get(METADATA_KEY)
        if wanted is None:
            return self.route
        if wanted not in ROUTES:
            _LOGGER.warning("auto brain: metadata %s=%r is not one of %s; using %s",
                            METADATA_KEY, wanted, ", ".join(ROUTES), self.route)
            return self.route
        return wanted  # type: ignore[return-value]

    def _answers_llm_calls(self, request: ResponseRequest) -> bool:
        """The request ends with outputs of calls the LLM made."""
        for item in reversed(request.items):
            if item.type != "function_call_output":
                return False
            if item.call_id in self._llm_calls:
                return True
        return False

    async def _ask_llm(self, request: ResponseRequest) -> AsyncIterator[BrainEvent]:
        events = self.llm.respond(request)
        try:
            async for event in events:
                if isinstance(event, OutputFunctionCall) and event.call_id:
                    self._llm_calls[event.call_id] = None
                    while len(self._llm_calls) > _REMEMBERED_CALLS:
                        self._llm_calls.popitem(last=False)
                yield event
        finally:
            aclose = getattr(events, "aclose", None)
            if aclose is not None:
                await aclose()

    async def respond(self, request: ResponseRequest) -> AsyncIterator[BrainEvent]:
        route = self.route_for(request)
        if route == "llm" or (route == "auto" and self._answers_llm_calls(request)):
            async for event in self._ask_llm(request):
                yield event
            return
        events = self.intents.respond(request)
        declined: Declined | None = None
        try:
            async for event in events:
                if isinstance(event, Declined) and route == "auto":
                    declined = event
                    break
                yield event
        finally:
            aclose = getattr(events, "aclose", None)
            if aclose is not None:
                await aclose()
        if declined is None:
            return
        _LOGGER.debug("auto brain: intents declined (%s); asking the LLM", declined.reason)
        async for event in self._ask_llm(request):
            yield event
