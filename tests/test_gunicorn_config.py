"""The web server as the product ships it (gunicorn.conf.py, read by the Procfile and bench/stack.py)."""

from __future__ import annotations

import http.client
import runpy
import signal
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gunicorn_config_keeps_idle_connections_longer_than_clients_and_load_balancers():
    config = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    # Longer than aiohttp's 15 s and an ALB's or nginx's 60 s idle timeout: the client closes first, so the
    # server never closes a connection a request is being sent on (bench/keepalive.py shows the resets).
    assert config["keepalive"] > 60
    assert config["worker_class"] == "mlaas_portal.gunicorn_worker.KeepaliveClosingThreadWorker"
    assert (config["threads"], config["timeout"], config["control_socket_disable"]) == (4, 60, True)
    assert "max_requests" not in config
    assert "--config gunicorn.conf.py" in (ROOT / "Procfile").read_text()


def test_gunicorn_stop_closes_idle_keepalive_connections_instead_of_waiting_for_them():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # A graceful timeout far beyond the wait below: only closing the idle connection lets the server stop.
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("gunicorn")), "bench.keepalive:app", "--config",
         str(ROOT / "gunicorn.conf.py"), "--bind", f"127.0.0.1:{port}", "--workers", "1",
         "--graceful-timeout", "600"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        for _ in range(300):  # until the worker answers (a connection made before it booted is not the case)
            probe = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            try:
                probe.request("GET", "/")
                probe.getresponse().read()
                break
            except ConnectionRefusedError:
                subprocess.run(["sleep", "0.1"], check=True)
            finally:
                probe.close()
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request("GET", "/")
        response = connection.getresponse()
        assert (response.status, response.read(), response.getheader("Connection")) == (200, b"ok", "keep-alive")

        server.send_signal(signal.SIGTERM)  # the connection is now idle, kept alive
        assert server.wait(timeout=120) == 0
        assert connection.sock.recv(1) == b""  # the server closed it
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        connection.close()
