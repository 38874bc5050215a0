"""The `hearth` command: one entry point, one subcommand per process.

A subcommand module provides `add_parser(subparsers) -> None`, which adds its parser and
sets `func(args: argparse.Namespace) -> int` (the exit code) as a default. Subcommands
import their dependencies only when they run, so `hearth --help` works on a satellite
without the server's packages and on a server without the satellite's.

`hearth server` lives here. Other subcommands are found, not listed in code: each module in
`OPTIONAL_SUBCOMMANDS` that is installed registers itself, so adding `hearth.satellite.cli`
needs no change to this file.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

#: Exit code for a configuration (or installation) the command cannot start with.
EXIT_CONFIG = 2

#: Modules that may provide a subcommand; an absent one is skipped.
OPTIONAL_SUBCOMMANDS = ("hearth.satellite.cli",)

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `hearth` command line; returns the process exit code."""
    args = build_parser().parse_args(argv)
    return args.func(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hearth",
        description="Hearth: a self-hosted, OpenAI-Realtime-compatible voice assistant for the home.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_server_parser(subparsers)
    for module_name in OPTIONAL_SUBCOMMANDS:
        _add_optional(subparsers, module_name)
    return parser


def _version() -> str:
    try:
        return version("hearth-voice")
    except PackageNotFoundError:
        return "unknown"


def _add_optional(subparsers: argparse._SubParsersAction, module_name: str) -> None:
    try:
        spec = importlib.util.find_spec(module_name)
    except ModuleNotFoundError:  # its parent package is not installed
        spec = None
    if spec is None:
        return
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        # Installed but broken (a missing dependency): say so when it is used, not on --help.
        _add_unavailable(subparsers, module_name.split(".")[-2], exc)
        return
    module.add_parser(subparsers)


def _add_unavailable(subparsers: argparse._SubParsersAction, name: str, exc: ImportError) -> None:
    # No option prefix: every argument after the name is swallowed, so the message below is
    # what the user sees rather than "unrecognized arguments".
    parser = subparsers.add_parser(name, help=f"(unavailable: {exc})", add_help=False, prefix_chars="\0")
    parser.add_argument("rest", nargs="*", help=argparse.SUPPRESS)

    def unavailable(args: argparse.Namespace) -> int:
        print(f"hearth {name}: cannot start: {exc}", file=sys.stderr)
        return EXIT_CONFIG

    parser.set_defaults(func=unavailable)


# ----------------------------------------------------------------------------- hearth server


def _add_server_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "server",
        help="run the house server (Realtime API over WebSocket, MQTT for satellites)",
        description="Run the house server. Options given here win over the configuration file; "
        "the API key comes from the file or the HEARTH_API_KEY environment variable.",
    )
    parser.add_argument("--config", type=Path, metavar="PATH", help="YAML file (docs/configuration.md); "
                        "without one, the defaults apply")
    parser.add_argument("--host", help="bind address (server.host)")
    parser.add_argument("--port", type=int, help="TCP port (server.port)")
    parser.add_argument("--log-level", type=str.lower, choices=("debug", "info", "warning", "error", "critical"),
                        help="log_level")
    parser.add_argument("--mqtt-url", metavar="URL", help="external MQTT broker for satellites, "
                        "mqtt://user:pass@host:port or mqtts://... (mqtt.url); without one the server "
                        "runs its own broker")
    parser.set_defaults(func=_run_server)


def _run_server(args: argparse.Namespace) -> int:
    try:
        from hearth.server.config import ConfigError, load_config
    except ImportError as exc:
        print(f"hearth server: missing dependency {exc.name!r}; install the server extra: "
              "pip install 'hearth-voice[server]'", file=sys.stderr)
        return EXIT_CONFIG
    overrides = {"server.host": args.host, "server.port": args.port, "log_level": args.log_level,
                 "mqtt.url": args.mqtt_url}
    try:
        config = load_config(args.config, overrides=overrides)
    except ConfigError as exc:
        print(f"hearth server: invalid configuration\n{exc}", file=sys.stderr)
        return EXIT_CONFIG
    logging.basicConfig(level=config.log_level.upper(), format=LOG_FORMAT)
    from hearth.server import log_escape

    log_escape.install()
    logging.getLogger("hearth").info("configuration: %s", config.source or "defaults")

    from hearth.server.main import run

    try:
        run(config)
    except KeyboardInterrupt:
        return 130
    return 0
