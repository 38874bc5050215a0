"""Fixtures shared across test folders."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server_harness import RunningServer, make_config, run_server

API_KEY = "test-key-123"


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One real server with the default cascade (real models) and an API key; no MQTT (tests/mqtt has its own)."""
    tmp: Path = tmp_path_factory.mktemp("server")
    config = make_config(tmp, {
        "server": {"api_key": API_KEY},
        "engine": {"brain": {"names": [{"name": "Kitchen Light", "domain": "light", "areas": ["Kitchen"]},
                                        {"name": "Porch Light", "domain": "light"}],
                             "areas": ["Kitchen", "Bedroom"]}},
        "mqtt": {"enabled": False},
        "discovery": {"enabled": False},
    })
    with run_server(config) as running:
        yield running
