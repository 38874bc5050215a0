"""Diagnostics: what the integration knows about the server, its satellites and recent tool calls."""

from __future__ import annotations

from typing import Any

from homeassistant.components.diagnostics import async_redact_data
from homeassistant.config_entries import ConfigEntry
from homeassistant.core import HomeAssistant

# Transcripts, answers and the prompt can hold personal data; ids and names stay.
TO_REDACT = {"transcript", "response", "api_prompt", "last_bad_payload", "text"}


async def async_get_config_entry_diagnostics(hass: HomeAssistant, entry: ConfigEntry) -> dict[str, Any]:
    hub = entry.runtime_data.hub
    data = {
        "entry": {"data": dict(entry.data), "options": dict(entry.options), "title": entry.title},
        "server": hub.server_status.to_dict() if hub.server_status else None,
        "llm_api": hub.llm_api,
        "satellites": {
            satellite_id: {
                "status": satellite.status.to_dict(),
                "activity": satellite.activity.to_dict() if satellite.activity else None,
                "settings": satellite.settings.to_dict() if satellite.settings else None,
                "catalog_revision": satellite.catalog_revision,
            }
            for satellite_id, satellite in hub.satellites.items()
        },
        "deviceless_catalog_revision": hub.deviceless_catalog_revision,
        "stats": {
            "tool_calls": hub.stats.tool_calls,
            "tool_errors": hub.stats.tool_errors,
            "catalogs_published": hub.stats.catalogs_published,
            "bad_payloads": hub.stats.bad_payloads,
            "last_bad_payload": hub.stats.last_bad_payload,
            "recent_calls": hub.stats.recent_calls,
        },
    }
    return async_redact_data(data, TO_REDACT)
