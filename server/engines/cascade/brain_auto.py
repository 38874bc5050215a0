"""The `auto` brain: Home Assistant's intents first, the LLM for whatever they decline.

Device commands, the time and the date are answered by the intent matcher in milliseconds
without an upstream request; anything it declines (a typed `Declined`, never a string
match) goes to the LLM brain with the same request, tools included. The decline's reason
is logged at debug level.

Which brain answers can be narrowed per satellite (`engine.brain.satellites`) and per
response (`metadata: {"hearth_brain": "intents" | "llm" | "auto"}` on `response.create`,
for a Realtime client that wants one path for a whole session: it sends it with each
response).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from typing import Literal

from hearth.server.session.interfaces import Declined, ResponseRequest

from .brain import Brain, BrainEvent

_LOGGER = logging.getLogger(__name__)

Route = Literal["auto", "intents", "llm"]
ROUTES: tuple[Route, ...] = ("auto", "intents", "llm")
#: Response metadata key that picks the route for one response.
METADATA_KEY = "hearth_brain"


class AutoBrain:
    """Routes each request to the intents brain, the LLM brain, or one then the other."""

    def __init__(self, intents: Brain, llm: Brain, *, route: Route = "auto",
                 satellites: Mapping[str, Route] | None = None) -> None:
        self.intents = intents
        self.llm = llm
        self.route = route
        self.satellites = dict(satellites or {})

    def for_satellite(self, satellite_id: str | None) -> AutoBrain:
        """The brain a satellite's sessions use (its configured route, else this one's)."""
        route = self.satellites.get(satellite_id or "", self.route)
        return self if route == self.route else AutoBrain(self.intents, self.llm, route=route)

    def route_for(self, request: ResponseRequest) -> Route:
        wanted = (request.metadata or {}).get(METADATA_KEY)
        if wanted is None:
            return self.route
        if wanted not in ROUTES:
            _LOGGER.warning("auto brain: metadata %s=%r is not one of %s; using %s",
                            METADATA_KEY, wanted, ", ".join(ROUTES), self.route)
            return self.route
        return wanted  # type: ignore[return-value]

    async def respond(self, request: ResponseRequest) -> AsyncIterator[BrainEvent]:
        route = self.route_for(request)
        if route == "llm":
            async for event in self.llm.respond(request):
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
        async for event in self.llm.respond(request):
            yield event
