"""Constants of the Hearth integration."""

from __future__ import annotations

from typing import Final

DOMAIN: Final = "hearth"

CONF_SERVER_ID: Final = "server_id"
CONF_LLM_HASS_API: Final = "llm_hass_api"
CONF_DEVICELESS_TOOLS: Final = "deviceless_tools"
CONF_RESPONSE_TIMEOUT: Final = "response_timeout"

DEFAULT_SERVER_ID: Final = "hearth"
DEFAULT_LLM_API: Final = "assist"
DEFAULT_RESPONSE_TIMEOUT: Final = 30.0

#: How long the config flow waits for the server's retained status.
STATUS_WAIT_SECONDS: Final = 5.0
#: How long an announcement may take before Home Assistant gives up on it.
ANNOUNCE_TIMEOUT_SECONDS: Final = 120.0
#: Coalesce bursts of registry/expose changes into one catalog refresh.
CATALOG_REFRESH_COOLDOWN: Final = 1.0

#: The assistant whose expose settings decide what Hearth may touch (Assist's own).
ASSISTANT: Final = "conversation"

ISSUE_SERVER_UNREACHABLE: Final = "server_unreachable"
