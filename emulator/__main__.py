"""`python -m emulator --host 127.0.0.1 --port 4566 --state .local/emulator.json`

Starts the emulator and blocks until SIGINT/SIGTERM. Its AWS state (S3
objects, IAM, SQS, the model registry...) is restored from --snapshot
(default: `emulator-state.pickle` next to the --state file) and saved there
every --snapshot-interval seconds while it changes, and on SIGINT/SIGTERM
(`--snapshot ""`: kept in memory only). If an emulator started from the same state file already
answers on the port, says so and waits (or exits 0 with --exit-if-running)
instead of failing, so a second `make run` works. Exit status: 0 stopped
cleanly or reused, 2 the port is held by something else, 1 any other
start-up failure.
"""

from __future__ import annotations

import argparse
import logging
import math
import signal
import sys
import threading
from pathlib import Path

from emulator.launcher import (
    EmulatorError,
    PortInUse,
    RunningEmulator,
    running_emulator_from_state,
    start_emulator,
)
from emulator.persistence import DEFAULT_INTERVAL

EXIT_PORT_TAKEN = 2
MAX_SNAPSHOT_INTERVAL = 3600.0
SNAPSHOT_NAME = "emulator-state.pickle"


def snapshot_interval(value: str) -> float:
    """Seconds between snapshots: a number > 0 and <= 3600."""
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, got {value!r}") from None
    if not (math.isfinite(seconds) and 0 < seconds <= MAX_SNAPSHOT_INTERVAL):
        raise argparse.ArgumentTypeError(f"must be > 0 and <= {MAX_SNAPSHOT_INTERVAL:g} seconds, got {value!r}")
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emulator", description=__doc__.split("\n")[2])
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to listen on")
    parser.add_argument("--port", type=int, default=4566, help="0 picks a free port")
    parser.add_argument("--state", default=".local/emulator.json", help="where to write endpoint and credentials")
    parser.add_argument("--snapshot", default=None,
                        help="where the AWS state is saved and restored from (default: emulator-state.pickle "
                             'next to --state; "" = memory only)')
    parser.add_argument("--snapshot-interval", type=snapshot_interval, default=DEFAULT_INTERVAL, metavar="SECONDS",
                        help="save at most this often while the state changes (a hard kill loses at most that)")
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
    if args.snapshot is None:
        snapshot: Path | None = state_file.with_name(SNAPSHOT_NAME)
    else:
        snapshot = Path(args.snapshot) if args.snapshot else None
    try:
        emulator = start_emulator(args.host, args.port, state_file, region=args.region,
                                  snapshot_path=snapshot,
                                  snapshot_interval=args.snapshot_interval)
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
        f"{emulator.user_arn}); state: {state_file}; {_persistence_summary(emulator, snapshot)}",
        flush=True,
    )
    try:
        _wait(stop_requested)
    finally:
        emulator.stop()
    print("AWS emulator stopped", flush=True)
    return 0


def _persistence_summary(emulator: RunningEmulator, snapshot: Path | None) -> str:
    if emulator.store is None:
        return "AWS state in memory only"
    if emulator.restored is None:
        return f"AWS state saved to {snapshot} (nothing to restore)"
    skipped = f", could not restore {', '.join(emulator.restored.skipped)}" if emulator.restored.skipped else ""
    return f"AWS state restored from and saved to {snapshot}{skipped}"


def _wait(stop_requested: threading.Event) -> None:
    # A timeout keeps the main thread waking up, so signal handlers run promptly.
    while not stop_requested.wait(0.5):
        pass


if __name__ == "__main__":
    sys.exit(main())
