"""A background loop that backs off on errors and stops cleanly on SIGTERM/SIGINT."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable

logger = logging.getLogger(__name__)


class LoopInterrupted(BaseException):
    """Raised out of a blocked tick by SIGTERM/SIGINT when the loop's work is safe to interrupt."""


class Loop:
    def __init__(self, name: str) -> None:
        self.name = name
        self.stopping = threading.Event()
        self._interrupt_ticks = False
        self._in_tick = False

    def install_signal_handlers(self, *, interrupt_ticks: bool = False) -> None:
        """Stop on SIGTERM/SIGINT after the current tick.

        With `interrupt_ticks`, a signal that arrives during a tick also ends the tick at once,
        even inside a slow network call: only for work that is at-least-once and idempotent
        (an unfinished intake message is simply delivered again).
        """
        self._interrupt_ticks = interrupt_ticks
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, *_: object) -> None:
        self.stop()
        if self._interrupt_ticks and self._in_tick:
            raise LoopInterrupted

    def stop(self) -> None:
        if not self.stopping.is_set():
            logger.info("%s: stopping", self.name)
        self.stopping.set()

    def run(self, tick: Callable[[], object], *, idle_seconds: float, max_backoff: float = 60.0) -> None:
        """Call tick() until stopped; sleep idle_seconds between calls, back off after errors."""
        failures = 0
        while not self.stopping.is_set():
            try:
                self._in_tick = True
                try:
                    tick()
                finally:
                    self._in_tick = False
                failures = 0
                delay = idle_seconds
            except LoopInterrupted:
                logger.info("%s: interrupted mid-tick; unfinished work is redelivered", self.name)
                break
            except Exception:  # noqa: BLE001 - a loop never crash-loops
                if self.stopping.is_set():
                    break  # shutting down: the services it talks to may already be gone
                failures += 1
                delay = min(max_backoff, idle_seconds * 2 ** failures)
                logger.exception("%s: tick failed (%d in a row); retrying in %.1f s", self.name, failures, delay)
            self.stopping.wait(delay)
