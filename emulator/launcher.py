"""Run moto's server in this process, on loopback, with IAM enforcement on.

moto keeps its state (buckets, users, the enforcement switch) in module
globals, so one process runs at most one emulator; stop() discards the state
and restores moto's settings, so a later `mock_aws` test in the same process
is unaffected.

With a `snapshot_path` the state outlives the process: it is restored from
that file before the server answers, saved there while it runs (see
`persistence`) and once more on stop().
"""

from __future__ import annotations

import errno
import ipaddress
import json
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from core.aws.clients import AwsConfig
from emulator import header_encoding, post_cors, presigned_auth
from emulator.bootstrap import (
    PlatformIdentity,
    bootstrap_platform_identity,
    enable_iam_enforcement,
    set_unauthenticated_budget,
)
from emulator.persistence import DEFAULT_INTERVAL, Restored, SnapshotInUse, StateStore

logger = logging.getLogger(__name__)

DEFAULT_REGION = "us-east-1"
STATE_FIELDS = ("endpoint", "access_key_id", "secret_access_key", "account_id", "user_arn", "region", "pid")

_active_lock = threading.Lock()
_active: RunningEmulator | None = None


class EmulatorError(RuntimeError):
    """The emulator could not be started."""


class PortInUse(EmulatorError):
    """Something already listens on the requested port."""


@dataclass
class RunningEmulator:
    endpoint: str
    access_key_id: str
    secret_access_key: str = field(repr=False)
    account_id: str
    user_arn: str
    region: str
    state_file: Path | None = None
    store: StateStore | None = field(default=None, repr=False, compare=False)
    restored: Restored | None = field(default=None, repr=False, compare=False)
    _persisting: bool = field(default=False, repr=False, compare=False)
    _server: Any = field(default=None, repr=False, compare=False)
    _thread: threading.Thread | None = field(default=None, repr=False, compare=False)
    _previous_budget: float = field(default=float("inf"), repr=False, compare=False)
    _stopped: bool = field(default=False, repr=False, compare=False)

    def aws_config(self) -> AwsConfig:
        """The platform identity as an `AwsConfig` for `make_client`."""
        return AwsConfig(
            region=self.region,
            endpoint_url=self.endpoint,
            access_key_id=self.access_key_id,
            secret_access_key=self.secret_access_key,
        )

    def state(self) -> dict[str, Any]:
        """What the state file holds (includes the secret key: keep it 0600)."""
        return {
            "endpoint": self.endpoint,
            "access_key_id": self.access_key_id,
            "secret_access_key": self.secret_access_key,
            "account_id": self.account_id,
            "user_arn": self.user_arn,
            "region": self.region,
            "pid": os.getpid(),
        }

    def stop(self) -> None:
        """Stop serving, discard moto's state, restore its settings. Idempotent."""
        global _active
        if self._stopped:
            return
        self._stopped = True
        if self._server is not None:
            self._server.shutdown()  # returns once serve_forever() has left
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self.store is not None:
            try:
                # Only a fully started emulator saves: a failed start must not overwrite a good snapshot.
                self.store.stop(final_snapshot=self._persisting)
            except Exception:  # noqa: BLE001 - the last periodic snapshot stays; stop the rest anyway
                logger.exception("emulator: the last snapshot to %s failed", self.store.path)
        _restore_moto(self._previous_budget)
        if self.state_file is not None:
            _remove_state_file_if_ours(self.state_file)
        with _active_lock:
            if _active is self:
                _active = None


def start_emulator(
    host: str = "127.0.0.1",
    port: int = 0,
    state_file: str | Path | None = None,
    *,
    region: str = DEFAULT_REGION,
    ready_timeout: float = 10.0,
    snapshot_path: str | Path | None = None,
    snapshot_interval: float = DEFAULT_INTERVAL,
) -> RunningEmulator:
    """Start moto on `host:port` (0 = a free port), bootstrap, enforce IAM.

    With `snapshot_path`, first restore the state saved there, then save it
    every `snapshot_interval` seconds while something changes, and on stop().
    The platform identity of a restored state is kept (same access key).

    Raises `PortInUse` if the port is taken, `ValueError` for a host that is
    not loopback or a bad interval, `EmulatorError` if an emulator already
    runs in this process.
    """
    global _active
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    address = _loopback_address(host)
    store = StateStore(snapshot_path, interval=snapshot_interval) if snapshot_path is not None else None
    with _active_lock:
        listener = _bind(address, port)  # first, so a taken port is reported as such
        if _active is not None:
            listener.close()
            raise EmulatorError(f"an emulator already runs in this process at {_active.endpoint}")
        if store is not None:
            try:
                store.acquire()
            except SnapshotInUse as error:
                listener.close()
                raise EmulatorError(str(error)) from None
        presigned_auth.apply()
        post_cors.apply()
        _disable_global_cors()
        app: Any = DomainDispatcherApplication(create_backend_app)
        restored = None
        if store is not None:
            try:
                restored = store.restore()  # before the first request can see an empty emulator
            except BaseException:
                store.release()
                listener.close()
                _reset_backends()  # nothing half-restored is left for the next start in this process
                raise
            app = store.wrap(app)
        server = make_server(
            address,
            listener.getsockname()[1],
            header_encoding.wrap(app),
            threaded=True,
            request_handler=MotoRequestHandler,
            fd=listener.fileno(),  # werkzeug dups it; a bind error would sys.exit() in werkzeug
        )
        listener.close()
        thread = threading.Thread(target=server.serve_forever, name="aws-emulator", daemon=True)
        thread.start()
        endpoint = f"http://{_url_host(address)}:{server.port}"
        emulator = RunningEmulator(
            endpoint=endpoint,
            access_key_id="",
            secret_access_key="",
            account_id="",
            user_arn="",
            region=region,
            store=store,
            restored=restored,
            _server=server,
            _thread=thread,
        )
        _active = emulator
    try:
        _wait_until_answering(endpoint, ready_timeout)
        emulator._previous_budget = set_unauthenticated_budget(endpoint, float("inf"))
        identity = bootstrap_platform_identity(endpoint=endpoint, region=region,
                                               reuse=_saved_identity(restored))
        enable_iam_enforcement(endpoint)
        emulator.access_key_id = identity.access_key_id
        emulator.secret_access_key = identity.secret_access_key
        emulator.account_id = identity.account_id
        emulator.user_arn = identity.user_arn
        if store is not None:
            store.meta = {"platform": {name: getattr(identity, name) for name in PLATFORM_FIELDS}}
            store.snapshot()
            store.start()
            emulator._persisting = True
        if state_file is not None:
            emulator.state_file = Path(state_file)
            write_state_file(emulator.state_file, emulator.state())
    except BaseException:
        emulator.stop()
        raise
    return emulator


PLATFORM_FIELDS = ("access_key_id", "secret_access_key", "account_id", "user_arn")


def _saved_identity(restored: Restored | None) -> PlatformIdentity | None:
    saved = (restored.meta.get("platform") if restored is not None else None) or {}
    if not all(isinstance(saved.get(name), str) for name in PLATFORM_FIELDS):
        return None
    return PlatformIdentity(**{name: saved[name] for name in PLATFORM_FIELDS})


def write_state_file(path: Path, state: dict[str, Any]) -> None:
    """Write `state` as JSON, readable by the owner only (it holds a secret key)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # O_CREAT's mode is masked by umask and ignored for an old file
        with os.fdopen(fd, "w") as out:
            json.dump({name: state[name] for name in STATE_FIELDS}, out, indent=2)
            out.write("\n")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def read_state_file(path: str | Path) -> dict[str, Any] | None:
    """The state file's content, or None if it is missing or unreadable."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _remove_state_file_if_ours(path: Path) -> None:
    state = read_state_file(path)
    if state is not None and state.get("pid") == os.getpid():
        path.unlink(missing_ok=True)


def _disable_global_cors() -> None:
    """Let only the buckets' CORS rules answer cross-origin requests, as on AWS.

    moto's server otherwise wraps every service in flask-cors, which allows
    any origin and would hide a missing bucket CORS rule until production.
    Read when each service's app is first built, i.e. on its first request.
    """
    from moto.moto_server import werkzeug_app

    werkzeug_app.DISABLE_GLOBAL_CORS = True


def _restore_moto(previous_budget: float) -> None:
    """Put moto's process-wide settings back and drop every backend's state."""
    from moto import settings
    from moto.core.responses import ActionAuthenticatorMixin
    from moto.moto_api._internal.models import moto_api_backend

    settings.INITIAL_NO_AUTH_ACTION_COUNT = previous_budget
    ActionAuthenticatorMixin.request_count = 0
    moto_api_backend.reset()


def _reset_backends() -> None:
    from moto.moto_api._internal.models import moto_api_backend

    moto_api_backend.reset()


def _loopback_address(host: str) -> str:
    """The IP to bind for `host`; refuses anything but loopback (moto has no real auth)."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise ValueError(f"cannot resolve emulator host {host!r}: {error}") from error
    addresses = [info[4][0] for info in infos]
    if not addresses or not all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses):
        raise ValueError(f"the emulator listens on loopback only, not on {host!r}")
    ipv4 = [a for a in addresses if ":" not in a]
    return ipv4[0] if ipv4 else addresses[0]


def _url_host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def _bind(address: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((address, port))
        listener.listen(128)
    except OSError as error:
        listener.close()
        if error.errno == errno.EADDRINUSE:
            raise PortInUse(f"{address}:{port} is already in use") from error
        raise EmulatorError(f"cannot listen on {address}:{port}: {error}") from error
    return listener


def _wait_until_answering(endpoint: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with requests.Session() as http:
        http.trust_env = False
        while True:
            try:
                http.get(f"{endpoint}/moto-api/", timeout=1).raise_for_status()
                return
            except requests.RequestException as error:
                if time.monotonic() > deadline:
                    raise EmulatorError(f"the emulator at {endpoint} did not answer: {error}") from error
                time.sleep(0.05)


def running_emulator_from_state(state_file: str | Path, *, host: str, port: int) -> dict[str, Any] | None:
    """The state of an emulator already answering on host:port with the state file's credentials.

    None if there is no state file, it names another endpoint, or its
    credentials are not accepted there (something else holds the port).
    """
    from botocore.exceptions import BotoCoreError, ClientError

    from core.aws.clients import make_client

    state = read_state_file(state_file)
    if state is None or not all(isinstance(state.get(name), str) for name in STATE_FIELDS[:-1]):
        return None
    try:
        expected = {f"http://{_url_host(address)}:{port}" for address in _all_addresses(host)}
    except ValueError:
        return None
    if state["endpoint"] not in expected:
        return None
    config = AwsConfig(
        region=state["region"],
        endpoint_url=state["endpoint"],
        access_key_id=state["access_key_id"],
        secret_access_key=state["secret_access_key"],
        connect_timeout=2,
        read_timeout=5,
        max_attempts=1,
    )
    try:
        identity = make_client("sts", config).get_caller_identity()
    except (BotoCoreError, ClientError):
        return None
    return state if identity.get("Arn") == state["user_arn"] else None


def _all_addresses(host: str) -> set[str]:
    _loopback_address(host)  # the same rule as for starting
    return {info[4][0] for info in socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)}
