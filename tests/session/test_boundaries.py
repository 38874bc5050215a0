"""The session engine stands alone: it imports no transport, engine or network library."""

from __future__ import annotations

import subprocess
import sys

FORBIDDEN = ("aiohttp", "aiortc", "paho", "openai", "amqtt", "faster_whisper", "piper", "hassil",
             "hearth.server.transports", "hearth.server.engines", "hearth.server.app")


def test_session_package_imports_no_io_or_engine() -> None:
    code = (
        "import sys, hearth.server.session.session, hearth.server.session.testing;"
        f"bad = [m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r} or m.startswith({FORBIDDEN!r})];"
        "print(','.join(bad))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""
