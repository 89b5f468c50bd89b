"""The local runtime of test endpoints: the step image's `serve` entry point as a child process on this machine.

It follows SageMaker's inference contract (mlaas_steps.serve: GET /ping, POST /invocations), so what is scored
locally is what a SageMaker endpoint would score. The process outlives the RQ job that starts it (its own
session); the endpoint row records its pid and port, and only a process whose command line is our `serve`
with that endpoint's model directory is ever signalled.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

SERVE_MODULE = "mlaas_steps.serve"
HOST = "127.0.0.1"


@dataclass(frozen=True)
class Started:
    pid: int
    port: int
    process: subprocess.Popen | None = None  # in the process that started it: exit status without a /proc race


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def start(model_dir: Path, log_path: Path) -> Started:
    """Start `serve` on a free local port for the model in `model_dir`; returns at once (see wait_ready)."""
    port = free_port()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    project_root = Path(__file__).resolve().parents[1]
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "DJANGO_"))}
    env["PYTHONPATH"] = str(project_root)
    # One request's rows are few: OpenMP threads only contend with each other (and every other process on a
    # busy machine). Measured on the shared 2-core box: 1-row requests 888 ms -> 127 ms median.
    env.setdefault("OMP_NUM_THREADS", "1")
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", SERVE_MODULE, "serve", "--model-dir", str(model_dir), "--host", HOST,
             "--port", str(port)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=project_root,
            start_new_session=True)
    return Started(pid=process.pid, port=port, process=process)


def ping(port: int, timeout: float = 2.0) -> tuple[int, dict]:
    """(HTTP status, body) of GET /ping; (0, {}) when nothing answers."""
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/ping", timeout=timeout) as response:  # noqa: S310
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, _json(error.read())
    except (OSError, ValueError):
        return 0, {}


def wait_ready(started: Started, *, timeout: float, log_path: Path) -> str:
    """'' once /ping answers 200; otherwise why not (the process exited, or the deadline passed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # Not is_running(): until the child has exec'd, its command line is still ours.
        if started.process is not None and started.process.poll() is not None:
            return f"the model server stopped while starting: {_last_line(log_path)}"
        status, _ = ping(started.port)
        if status == 200:
            return ""
        time.sleep(0.25)
    return f"the model server did not answer /ping within {timeout:.0f} s"


def invoke(port: int, body: bytes, content_type: str, *, timeout: float = 60.0) -> tuple[int, dict]:
    """POST /invocations: (status, JSON body); (0, {}) when the server cannot be reached."""
    request = urllib.request.Request(f"http://{HOST}:{port}/invocations", data=body, method="POST",
                                     headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - our own local server
            return response.status, _json(response.read())
    except urllib.error.HTTPError as error:
        return error.code, _json(error.read())
    except OSError:
        return 0, {}


def is_running(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)  # reap it if it is our own child that exited
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    return Path(f"/proc/{pid}").exists() and _is_serve(pid)


def stop(pid: int | None, model_dir: Path | None = None, *, grace: float = 5.0) -> bool:
    """SIGTERM (then SIGKILL) our `serve` process `pid`; False when there was none to stop."""
    if not pid or not _is_serve(pid, model_dir):
        return False
    try:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and is_running(pid):
            time.sleep(0.1)
        if is_running(pid):
            os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return True


def stop_started(started: Started, model_dir: Path) -> None:
    """Stop a server this process started (its Popen is known, so no command-line check is needed)."""
    if started.process is None:
        stop(started.pid, model_dir)
        return
    started.process.terminate()
    try:
        started.process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        started.process.kill()
        started.process.wait(timeout=5)


def _is_serve(pid: int, model_dir: Path | None = None) -> bool:
    """Whether `pid` is a `serve` process (of `model_dir`), so a recycled pid is never signalled."""
    try:
        parts = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    if SERVE_MODULE.encode() not in parts:
        return False
    return model_dir is None or str(model_dir).encode() in parts


def _json(raw: bytes) -> dict:
    try:
        document = json.loads(raw or b"{}")
    except ValueError:
        return {"message": raw[:500].decode(errors="replace")}
    return document if isinstance(document, dict) else {"message": str(document)[:500]}


def _last_line(log_path: Path) -> str:
    try:
        lines = [line for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no log"
    serve_lines = [line for line in lines if line.startswith("serve:")]
    return (serve_lines or lines or ["no log"])[-1][:500]
