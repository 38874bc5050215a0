"""The session engine stands alone, and only the composition root builds sessions."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SERVER = Path(__file__).resolve().parents[2] / "server"

FORBIDDEN = ("aiohttp", "aiortc", "paho", "openai", "amqtt", "faster_whisper", "piper", "hassil",
             "hearth.server.transports", "hearth.server.engines", "hearth.server.app",
             "hearth.server.mqtt", "hearth.server.config", "hearth.server.context")


def test_session_package_imports_no_io_or_engine() -> None:
    code = (
        "import sys, hearth.server.session.session, hearth.server.session.testing;"
        f"bad = [m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r} or m.startswith({FORBIDDEN!r})];"
        "print(','.join(bad))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            names.add(("." * node.level) + (node.module or ""))
            names.update(f"{'.' * node.level}{node.module or ''}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_only_the_composition_root_builds_sessions() -> None:
    """Transports and the bridge ask the session registry; nobody else constructs a RealtimeSession."""
    builders = []
    for path in SERVER.rglob("*.py"):
        rel = path.relative_to(SERVER).as_posix()
        if rel.startswith("session/") or rel == "sessions.py":
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == \
                    "RealtimeSession":
                builders.append(rel)
    assert builders == []


def test_nothing_below_the_composition_root_imports_it() -> None:
    """app.py composes; no module it composes imports it back (no import circles)."""
    offenders = []
    for path in SERVER.rglob("*.py"):
        rel = path.relative_to(SERVER).as_posix()
        if rel in ("app.py", "main.py"):
            continue
        for name in _imports(path):
            if name.endswith(".app") or ".app." in name or name in ("hearth.server.app",):
                offenders.append(f"{rel}: {name}")
    assert offenders == []
