"""A background loop that backs off on errors and stops cleanly on SIGTERM/SIGINT."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable

logger = logging.getLogger(__name__)


class Loop:
    def __init__(self, name: str) -> None:
        self.name = name
        self.stopping = threading.Event()

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop())

    def stop(self) -> None:
        if not self.stopping.is_set():
            logger.info("%s: stopping", self.name)
        self.stopping.set()

    def run(self, tick: Callable[[], object], *, idle_seconds: float, max_backoff: float = 60.0) -> None:
        """Call tick() until stopped; sleep idle_seconds between calls, back off after errors."""
        failures = 0
        while not self.stopping.is_set():
            try:
                tick()
                failures = 0
                delay = idle_seconds
            except Exception:  # noqa: BLE001 - a loop never crash-loops
                if self.stopping.is_set():
                    break  # shutting down: the services it talks to may already be gone
                failures += 1
                delay = min(max_backoff, idle_seconds * 2 ** failures)
                logger.exception("%s: tick failed (%d in a row); retrying in %.1f s", self.name, failures, delay)
            self.stopping.wait(delay)
