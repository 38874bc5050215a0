"""The `hearth` command line: help, version, `hearth server`, optional subcommands."""

from __future__ import annotations

import importlib.machinery
import logging
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from hearth import cli
from hearth.server.config import API_KEY_ENV, ServerConfig

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _no_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(API_KEY_ENV, raising=False)


@pytest.fixture
def fake_server_main(monkeypatch: pytest.MonkeyPatch) -> list[ServerConfig]:
    """Stands in for `hearth.server.main` and records the config `run` receives."""
    calls: list[ServerConfig] = []
    module = types.ModuleType("hearth.server.main")
    module.run = calls.append  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "hearth.server.main", module)
    return calls


def run_hearth(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != API_KEY_ENV} | (env or {})
    return subprocess.run(
        [sys.executable, "-m", "hearth", *args], capture_output=True, text=True, timeout=60, env=environ, cwd=ROOT
    )


def test_help_lists_the_server(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["--help"])
    assert info.value.code == 0
    assert "server" in capsys.readouterr().out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith("hearth ")


def test_a_subcommand_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main([])
    assert info.value.code == 2
    assert "COMMAND" in capsys.readouterr().err


def test_server_runs_with_the_loaded_config(tmp_path: Path, fake_server_main: list[ServerConfig]) -> None:
    path = tmp_path / "server.yaml"
    path.write_text("server: {port: 9000}\nlog_level: warning\nsession: {voice: marin}\n")
    assert cli.main(["server", "--config", str(path), "--port", "9100", "--log-level", "DEBUG"]) == 0
    (config,) = fake_server_main
    assert (config.server.port, config.log_level, config.session.voice) == (9100, "debug", "marin")
    assert config.source == path


def test_server_without_a_config_uses_the_defaults(fake_server_main: list[ServerConfig]) -> None:
    assert cli.main(["server", "--host", "::1"]) == 0
    assert (fake_server_main[0].server.host, fake_server_main[0].server.port) == ("::1", 8000)


def test_server_configures_logging(fake_server_main: list[ServerConfig], monkeypatch: pytest.MonkeyPatch) -> None:
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])
    monkeypatch.setattr(root, "level", logging.WARNING)
    assert cli.main(["server", "--log-level", "debug"]) == 0
    assert root.level == logging.DEBUG and root.handlers


def test_bad_config_exits_2_naming_the_key(
    tmp_path: Path, fake_server_main: list[ServerConfig], capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "server.yaml"
    path.write_text("engine: {stt: {beam_size: wide}}\n")
    assert cli.main(["server", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: engine.stt.beam_size: expected int" in err
    assert not fake_server_main


def test_reachable_host_without_a_key_exits_2(
    fake_server_main: list[ServerConfig], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["server", "--host", "0.0.0.0"]) == 2
    assert API_KEY_ENV in capsys.readouterr().err
    assert not fake_server_main


def test_ctrl_c_exits_quietly(monkeypatch: pytest.MonkeyPatch, fake_server_main: list[ServerConfig]) -> None:
    def interrupted(config: ServerConfig) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(sys.modules["hearth.server.main"], "run", interrupted)
    assert cli.main(["server"]) == 130


# ----------------------------------------------------------------------------- optional subcommands


def test_an_installed_subcommand_module_registers_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("hearth.satellite.cli")
    module.__spec__ = importlib.machinery.ModuleSpec("hearth.satellite.cli", None)

    def add_parser(subparsers: object) -> None:
        parser = subparsers.add_parser("satellite", help="run a satellite")  # type: ignore[attr-defined]
        parser.add_argument("--name")
        parser.set_defaults(func=lambda args: 7 if args.name == "kitchen" else 1)

    module.add_parser = add_parser  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "hearth.satellite.cli", module)
    assert cli.main(["satellite", "--name", "kitchen"]) == 7


def test_an_absent_subcommand_module_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "OPTIONAL_SUBCOMMANDS", ("hearth.no_such_package.cli", "hearth.no_such_module"))
    assert "no_such" not in cli.build_parser().format_help()


def test_a_broken_subcommand_module_reports_when_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    package = tmp_path / "hearth_fake_sat"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "cli.py").write_text("import hearth_missing_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(cli, "OPTIONAL_SUBCOMMANDS", ("hearth_fake_sat.cli",))
    assert "hearth_fake_sat" in cli.build_parser().format_help()  # --help still works
    assert cli.main(["hearth_fake_sat", "--anything"]) == 2
    assert "hearth_missing_dependency_xyz" in capsys.readouterr().err


# ----------------------------------------------------------------------------- python -m hearth


def test_python_m_hearth_help_and_version() -> None:
    help_ = run_hearth("--help")
    assert help_.returncode == 0 and "server" in help_.stdout
    version = run_hearth("--version")
    assert version.returncode == 0 and version.stdout.startswith("hearth ")


def test_python_m_hearth_bad_config_exits_2_without_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "server.yaml"
    path.write_text("server:\n  port: 0\n  hots: 0.0.0.0\n")
    result = run_hearth("server", "--config", str(path))
    assert result.returncode == 2
    assert f"{path}: server.hots: unknown option" in result.stderr
    assert f"{path}: server.port: value must be at least 1" in result.stderr
    assert "Traceback" not in result.stderr


def test_python_m_hearth_reports_a_bad_flag() -> None:
    result = run_hearth("server", "--port", "eighty")
    assert result.returncode == 2 and "--port" in result.stderr


def _server_config(tmp_path: Path, stt_model: str) -> Path:
    path = tmp_path / "server.yaml"
    path.write_text(f"engine: {{stt: {{model: '{stt_model}'}}}}\nmqtt: {{enabled: false}}\n"
                    "discovery: {enabled: false}\nlog_level: warning\n")
    return path


def test_python_m_hearth_missing_model_directory_is_a_config_error(tmp_path: Path) -> None:
    path = _server_config(tmp_path, "/nonexistent")
    result = run_hearth("server", "--config", str(path))
    assert result.returncode == 2
    assert f"{path}: engine.stt.model: '/nonexistent' is neither a model name" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_python_m_hearth_model_that_cannot_load_says_cannot_start(tmp_path: Path) -> None:
    """A model the config admits but the engine cannot load ends the server with one line, no traceback."""
    empty = tmp_path / "whisper"
    empty.mkdir()  # a directory, so the schema admits it, without a model in it
    result = run_hearth("server", "--config", str(_server_config(tmp_path, str(empty))))
    assert result.returncode == 1, result.stderr
    assert f"hearth server: cannot start: Whisper model at {empty} failed to load" in result.stderr
    assert "Traceback" not in result.stderr
    assert "Hearth is ready" not in result.stdout
