"""What a person sees and hears when the satellite changes state: hooks, an LED, sounds."""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
import threading
from dataclasses import dataclass
from typing import Callable, Protocol

from .config import HooksSection, LedSection

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class StateChange:
    previous: str
    state: str
    satellite_id: str
    session_id: str | None = None


class StateListener(Protocol):
    def __call__(self, change: StateChange) -> None: ...


class CommandHook:
    """Runs the configured commands on every state change, without blocking the audio loop."""

    def __init__(self, config: HooksSection) -> None:
        self.config = config

    def __call__(self, change: StateChange) -> None:
        commands = []
        if self.config.command is not None:
            commands.append(self.config.command)
        if change.state in self.config.states:
            commands.append(self.config.states[change.state])
        for command in commands:
            self._spawn(command, change)

    def _spawn(self, command: str | list[str], change: StateChange) -> None:
        env = dict(os.environ)
        env.update(
            HEARTH_STATE=change.state,
            HEARTH_PREVIOUS_STATE=change.previous,
            HEARTH_SATELLITE_ID=change.satellite_id,
            HEARTH_SESSION_ID=change.session_id or "",
        )
        # A string is split like a shell would split it, but no shell runs it; the
        # state is appended as the last argument. For pipes or redirection use
        # [sh, -c, "…"] and read $HEARTH_STATE.
        args = [*(shlex.split(command) if isinstance(command, str) else command), change.state]
        try:
            process = subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL)  # noqa: S603
        except OSError as err:
            _LOGGER.warning("state hook %r could not start: %s", command, err)
            return
        threading.Thread(target=self._reap, args=(process, command), daemon=True, name="hearth-hook").start()

    def _reap(self, process: subprocess.Popen, command: object) -> None:
        try:
            code = process.wait(timeout=self.config.timeout)
        except subprocess.TimeoutExpired:
            _LOGGER.warning("state hook %r ran longer than %.1f s; killed", command, self.config.timeout)
            process.kill()
            process.wait()
            return
        if code:
            _LOGGER.warning("state hook %r exited with %d", command, code)


class GpioLed:
    """A single status LED through gpiozero (optional dependency, off by default).

    idle: off · listening: on · thinking: fast blink · speaking: slow blink ·
    error: very fast blink · muted: short flash every 2 s.
    """

    PATTERNS: dict[str, tuple[str, float, float]] = {
        "idle": ("off", 0, 0),
        "listening": ("on", 0, 0),
        "thinking": ("blink", 0.15, 0.15),
        "speaking": ("blink", 0.5, 0.5),
        "error": ("blink", 0.07, 0.07),
        "muted": ("blink", 0.05, 1.95),
    }

    def __init__(self, config: LedSection, factory: Callable[..., object] | None = None) -> None:
        if factory is None:
            try:
                from gpiozero import LED
            except ImportError as err:
                raise RuntimeError("led.enabled needs the optional `gpiozero` package (pip install gpiozero)") from err
            factory = LED
        self._led = factory(config.pin, active_high=config.active_high)

    def __call__(self, change: StateChange) -> None:
        kind, on_time, off_time = self.PATTERNS.get(change.state, ("off", 0, 0))
        if kind == "on":
            self._led.on()  # type: ignore[attr-defined]
        elif kind == "off":
            self._led.off()  # type: ignore[attr-defined]
        else:
            self._led.blink(on_time=on_time, off_time=off_time, background=True)  # type: ignore[attr-defined]

    def close(self) -> None:
        close = getattr(self._led, "close", None)
        if close:
            close()


class MuteButton:
    """A push button on a GPIO pin that toggles mute (gpiozero, optional)."""

    def __init__(self, pin: int, on_press: Callable[[], None]) -> None:
        try:
            from gpiozero import Button
        except ImportError as err:
            raise RuntimeError("mute.button_pin needs the optional `gpiozero` package") from err
        self._button = Button(pin)
        self._button.when_pressed = on_press

    def close(self) -> None:
        self._button.close()
