"""`python -m emulator --host 127.0.0.1 --port 4566 --state .local/emulator.json`

Starts the emulator and blocks until SIGINT/SIGTERM. If an emulator started
from the same state file already answers on the port, says so and waits
(or exits 0 with --exit-if-running) instead of failing, so a second
`make run` works. Exit status: 0 stopped cleanly or reused, 2 the port is
held by something else, 1 any other start-up failure.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from emulator.launcher import (
    EmulatorError,
    PortInUse,
    running_emulator_from_state,
    start_emulator,
)

EXIT_PORT_TAKEN = 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emulator", description=__doc__.split("\n")[2])
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to listen on")
    parser.add_argument("--port", type=int, default=4566, help="0 picks a free port")
    parser.add_argument("--state", default=".local/emulator.json", help="where to write endpoint and credentials")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--exit-if-running", action="store_true", help="exit 0 at once when reusing a running emulator")
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)

    if not args.verbose:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
    stop_requested = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop_requested.set())

    state_file = Path(args.state)
    try:
        emulator = start_emulator(args.host, args.port, state_file, region=args.region)
    except PortInUse:
        running = running_emulator_from_state(state_file, host=args.host, port=args.port)
        if running is None:
            print(
                f"AWS emulator: port {args.port} on {args.host} is in use by something that is not the "
                f"emulator of {state_file} (or its credentials are refused there). Stop it or pick "
                "another port.",
                file=sys.stderr,
            )
            return EXIT_PORT_TAKEN
        print(f"AWS emulator already running at {running['endpoint']} (pid {running['pid']}), "
              f"reusing it; state: {state_file}", flush=True)
        if not args.exit_if_running:
            _wait(stop_requested)
        return 0
    except (EmulatorError, ValueError) as error:
        print(f"AWS emulator: {error}", file=sys.stderr)
        return 1

    print(
        f"AWS emulator ready at {emulator.endpoint} (IAM enforcement on, platform identity "
        f"{emulator.user_arn}); state: {state_file}",
        flush=True,
    )
    try:
        _wait(stop_requested)
    finally:
        emulator.stop()
    print("AWS emulator stopped", flush=True)
    return 0


def _wait(stop_requested: threading.Event) -> None:
    # A timeout keeps the main thread waking up, so signal handlers run promptly.
    while not stop_requested.wait(0.5):
        pass


if __name__ == "__main__":
    sys.exit(main())
