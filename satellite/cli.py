"""``hearth satellite``: run a satellite (the composition root of :mod:`hearth.satellite`).

The main ``hearth`` command imports this module lazily and calls
:func:`add_parser`; ``python -m hearth.satellite`` and :func:`main` work
standalone. Only the ``satellite`` extra is needed.
"""

from __future__ import annotations

import argparse
import logging
import queue
import signal
import sys
import threading
from typing import Sequence

from hearth.wire import MqttUrl, ProtocolError

from .config import ConfigError, SatelliteConfig, load_config

_LOGGER = logging.getLogger("hearth.satellite")

DESCRIPTION = (
    "Run a Hearth satellite: listen for the wake word, stream the request to the house server "
    "over MQTT, play the reply. With --input-wav it reads a WAV file instead of a microphone "
    "(tests, demos) and exits once the file is used up and the conversation is over."
)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``satellite`` subcommand; its handler is ``args.func(args) -> int``."""
    parser = subparsers.add_parser("satellite", help="run a satellite (wake word + MQTT)", description=DESCRIPTION)
    configure_parser(parser)
    return parser


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="PATH", help="satellite YAML config (docs/satellite-configuration.md)")
    parser.add_argument("--id", dest="satellite_id", metavar="ID", help="satellite id (overrides satellite.id)")
    parser.add_argument(
        "--mqtt-url", metavar="URL", help="broker, mqtt://user:pass@host:port or mqtts://… (overrides mqtt.url)"
    )
    parser.add_argument("--input-wav", metavar="PATH", help="read the microphone from this WAV file instead")
    parser.add_argument(
        "--fast", action="store_true", help="with --input-wav: read the file as fast as possible, not in real time"
    )
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--output-wav", metavar="PATH", help="write all reply audio to this WAV file instead of playing it")
    out.add_argument("--output-dir", metavar="DIR", help="write each reply to its own WAV file in this folder")
    parser.add_argument("--input-device", metavar="NAME|INDEX", help="microphone (overrides audio.input_device)")
    parser.add_argument("--output-device", metavar="NAME|INDEX", help="speaker (overrides audio.output_device)")
    parser.add_argument("--wake-engine", choices=["openwakeword", "micro"], help="overrides wake.engine")
    parser.add_argument(
        "--wake-model", action="append", metavar="NAME|PATH", help="wake word model (repeatable; overrides wake.models)"
    )
    parser.add_argument("--muted", action="store_true", default=None, help="start muted")
    parser.add_argument("--list-devices", action="store_true", help="list sound devices and exit")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"], help="overrides log_level")
    parser.set_defaults(func=run_from_args)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hearth satellite", description=DESCRIPTION)
    configure_parser(parser)
    args = parser.parse_args(argv)
    return args.func(args)


def config_from_args(args: argparse.Namespace) -> SatelliteConfig:
    overrides: dict[str, object] = {}
    for option, dotted in [
        ("satellite_id", "satellite.id"),
        ("mqtt_url", "mqtt.url"),
        ("input_device", "audio.input_device"),
        ("output_device", "audio.output_device"),
        ("wake_engine", "wake.engine"),
        ("wake_model", "wake.models"),
        ("muted", "mute.start_muted"),
        ("log_level", "log_level"),
    ]:
        value = getattr(args, option, None)
        if value is not None:
            overrides[dotted] = value
    return load_config(args.config, overrides)


def run_from_args(args: argparse.Namespace) -> int:
    if args.list_devices:
        from .audio import list_devices

        print("\n".join(list_devices()))
        return 0
    try:
        config = config_from_args(args)
        config.satellite_id  # noqa: B018 - raises ConfigError when missing
    except ConfigError as err:
        print(f"hearth satellite: {err}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    try:
        satellite = build_satellite(config, args)
    except (ConfigError, ProtocolError, RuntimeError, OSError) as err:
        _LOGGER.error("%s", err)
        return 1
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: satellite.stop())
        signal.signal(signal.SIGINT, lambda *_: satellite.stop())
        signal.signal(signal.SIGUSR1, lambda *_: satellite.toggle_mute())
    satellite.run(until_input_ends=bool(args.input_wav))
    return 0


def resolve_broker(config: SatelliteConfig) -> MqttUrl:
    if config.mqtt.url:
        return MqttUrl.parse(config.mqtt.url)
    if not config.discovery.enabled:
        raise ConfigError("no mqtt.url and discovery is disabled")
    from .discovery import discover_server

    while True:
        _LOGGER.info("No broker configured; looking for a house server (_hearth._tcp.local.)")
        advert = discover_server(config.discovery.timeout)
        if advert is not None:
            return advert.mqtt


def build_satellite(config: SatelliteConfig, args: argparse.Namespace):  # noqa: ANN201
    """Build every part from the config: the one place that picks concrete classes."""
    from . import audio
    from .feedback import CommandHook, GpioLed, MuteButton
    from .mqtt import MqttLink
    from .satellite import Satellite
    from .vad import create_vad
    from .wake import create_detector

    detector = create_detector(
        config.wake.engine,
        config.wake.models,
        threshold=config.wake.threshold,
        trigger_level=config.wake.trigger_level,
        refractory_s=config.wake.refractory,
    )
    vad = create_vad(config.vad.engine, aggressiveness=config.vad.aggressiveness, threshold=config.vad.threshold)
    frame_ms = config.audio.frame_ms
    if args.input_wav:
        source: audio.AudioSource = audio.WavFileSource(args.input_wav, frame_ms=frame_ms, fast=args.fast)
    else:
        source = audio.PyAudioSource(config.audio.input_device, frame_ms=frame_ms)
    if args.output_wav or args.output_dir:
        sink: audio.AudioSink = audio.WavFileSink(
            output_wav=args.output_wav, output_dir=args.output_dir, realtime=not args.fast
        )
    elif args.input_wav:
        _LOGGER.warning("--input-wav without --output-wav/--output-dir: replies are not played")
        sink = audio.NullSink()
    else:
        sink = audio.PyAudioSink(config.audio.output_device, buffer_ms=config.audio.output_buffer_ms)
    sounds = {}
    for name in ("wake", "done", "error"):
        path = getattr(config.sounds, name)
        if path:
            sounds[name] = audio.read_wav(path)
    listeners = []
    if config.hooks.command is not None or config.hooks.states:
        listeners.append(CommandHook(config.hooks))
    if config.led.enabled:
        listeners.append(GpioLed(config.led))
    url = resolve_broker(config)
    inbox: queue.Queue[object] = queue.Queue()
    link = MqttLink(url, config.mqtt, config.satellite_id, inbox)
    satellite = Satellite(
        config,
        link=link,
        source=source,
        sink=sink,
        detector=detector,
        vad=vad,
        listeners=listeners,
        sounds=sounds,
        version=_version(),
    )
    if config.mute.button_pin is not None:
        MuteButton(config.mute.button_pin, satellite.toggle_mute)
    return satellite


def _version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("hearth-voice")
    except PackageNotFoundError:
        return None
