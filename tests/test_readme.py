"""The README keeps its promises: the two commands lead, and the Python tour runs as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.server_harness import make_config, run_server

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_readme_opens_with_the_two_commands() -> None:
    blocks = re.findall(r"```(\w*)\n(.*?)```", README, re.S)
    assert README.startswith("```sh\n")
    (lang1, run), (lang2, test) = blocks[:2]
    assert (lang1, lang2) == ("sh", "sh")
    assert "hearth server" in run and run.count("\n") == 1
    assert test.strip() == "bash .ci/run"
    ci = (ROOT / ".ci" / "run").read_text()
    assert "pytest" in ci


@pytest.mark.slow
def test_readme_python_tour_runs_as_written(tmp_path: Path) -> None:
    snippet = re.search(r"```python\n(.*?)```", README, re.S).group(1)
    assert "127.0.0.1:8000" in snippet
    with run_server(make_config(tmp_path)) as server:  # the defaults: loopback, no key
        code = snippet.replace("127.0.0.1:8000", f"127.0.0.1:{server.port}")
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"It's \d{1,2}:\d{2} [AP]M\.\n", result.stdout), result.stdout
