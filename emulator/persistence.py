"""Keep the emulator's state across restarts: snapshot moto's backends to a file, restore them at start.

moto keeps every service's state (S3 objects and their versions, IAM, STS
sessions, SQS messages, EventBridge rules, the SageMaker model registry,
DynamoDB, ECR, CloudWatch Logs...) in plain Python objects, one backend per
service, account and region. A snapshot pickles each backend's attributes;
a restore puts them into fresh backends of a new process, before it serves.

When: a background thread takes a snapshot at most every `interval` seconds,
and only after a request that may have changed something (any method but
GET/HEAD/OPTIONS); `stop()` takes a last one. A hard kill therefore loses at
most the changes of the last `interval` seconds plus the time one snapshot
takes to write.

Consistency: while a snapshot is pickled, new requests wait at the gate
(a WSGI middleware) and the snapshot waits, briefly, for the requests in
flight to finish. SQS long polls are not "in flight" while they sleep
waiting for a message, so they neither hold a snapshot back nor are torn by
it. The file is written to a temporary name, fsynced and renamed over the
previous one, so a crash mid-write keeps the previous snapshot.

Each service is pickled on its own: a service whose state cannot be pickled
(moto has threads in a few models the portal does not use) is logged and
keeps its last good snapshot, and one that cannot be restored is logged and
starts empty, instead of losing every other service with it.

The file is a pickle: it is read only from the path the operator named
(`.local/` by default), written mode 0600 because IAM secrets are in it.
A snapshot from another moto version is set aside, not loaded.
"""

from __future__ import annotations

import contextlib
import copyreg
import fcntl
import importlib
import io
import logging
import os
import pickle
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

FORMAT = 1
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
DEFAULT_INTERVAL = 1.0
# How long a snapshot waits for the requests in flight before it pickles anyway.
DRAIN_TIMEOUT = 1.0
# A request that mutates a dict the snapshot is pickling makes pickle raise; try again.
PICKLE_ATTEMPTS = 3

BackendKey = tuple[str, str, str, str]  # (module, attribute, account id, region)


class SnapshotInUse(Exception):
    """Another emulator (process) persists to the same snapshot file."""


class SnapshotUnreadable(Exception):
    """The snapshot file exists but cannot be restored (corrupt, another format or moto version)."""


@dataclass
class Restored:
    """What `restore()` found: the metadata saved with the snapshot and what it could not restore."""

    meta: dict[str, Any]
    services: list[str]
    skipped: list[str] = field(default_factory=list)


# --- the gate: requests against snapshots ------------------------------------------


class RequestGate:
    """WSGI middleware: counts requests in flight, holds new ones while a snapshot runs, notes changes."""

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app
        self._cond = threading.Condition()
        self._in_flight = 0
        self._closed = False
        self._dirty = False

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        mutating = environ.get("REQUEST_METHOD", "GET").upper() not in SAFE_METHODS
        self._enter(mutating)
        try:
            return self.app(environ, start_response)
        finally:
            self._leave(mutating)

    def _enter(self, mutating: bool) -> None:
        with self._cond:
            while self._closed:
                self._cond.wait()
            self._in_flight += 1
            if mutating:
                self._dirty = True

    def _leave(self, mutating: bool) -> None:
        with self._cond:
            self._in_flight -= 1
            if mutating:  # again at the end: a snapshot taken meanwhile may have missed its change
                self._dirty = True
            self._cond.notify_all()

    @contextlib.contextmanager
    def idle(self) -> Iterator[None]:
        """A request sleeping here (an SQS long poll) does not hold back a snapshot."""
        with self._cond:
            self._in_flight -= 1
            self._cond.notify_all()
        try:
            yield
        finally:
            self._enter(False)

    @property
    def dirty(self) -> bool:
        return self._dirty

    def mark_dirty(self) -> None:
        self._dirty = True

    @contextlib.contextmanager
    def closed(self, drain_timeout: float = DRAIN_TIMEOUT) -> Iterator[None]:
        """Hold new requests and wait (up to `drain_timeout`) for those in flight; clears the dirty mark."""
        with self._cond:
            self._closed = True
            deadline = time.monotonic() + drain_timeout
            while self._in_flight > 0 and (remaining := deadline - time.monotonic()) > 0:
                self._cond.wait(remaining)
            self._dirty = False
        try:
            yield
        finally:
            with self._cond:
                self._closed = False
                self._cond.notify_all()


_gate: RequestGate | None = None


def _patch_sqs_long_poll() -> None:
    """Mark the wait of an SQS long poll as idle for the gate (moto 5.2.5 `Queue.wait_for_messages`)."""
    from moto.sqs.models import Queue

    if getattr(Queue.wait_for_messages, "_mlaas_idle", False):
        return
    original = Queue.wait_for_messages

    def wait_for_messages(self: Any, timeout: int) -> None:
        gate = _gate
        if gate is None:
            return original(self, timeout)
        with gate.idle():
            return original(self, timeout)

    wait_for_messages._mlaas_idle = True  # type: ignore[attr-defined]
    Queue.wait_for_messages = wait_for_messages


# --- pickling moto's backends -----------------------------------------------------


def _dispatch_table() -> dict[type, Callable[[Any], Any]]:
    """copyreg's reducers, plus: locks, conditions and events as new, free ones (nothing waits on them in
    a new process); S3's key store with every version of every key."""
    from moto.s3.utils import _VersionedKeyStore

    return {
        **copyreg.dispatch_table,
        type(threading.Lock()): lambda _: (threading.Lock, ()),
        type(threading.RLock()): lambda _: (threading.RLock, ()),
        threading.Condition: lambda _: (threading.Condition, ()),
        threading.Event: lambda _: (threading.Event, ()),
        _VersionedKeyStore: _reduce_versioned_keys,
    }


def _reduce_versioned_keys(store: dict[str, Any]) -> tuple[Any, ...]:
    # Its items() yield only each key's latest version: pickled as a dict it would lose the older ones.
    return _rebuild_versioned_keys, (type(store), [(key, dict.__getitem__(store, key)) for key in dict.keys(store)])


def _rebuild_versioned_keys(cls: type, items: list[tuple[str, list[Any]]]) -> dict[str, Any]:
    store = cls()
    for key, versions in items:
        dict.__setitem__(store, key, versions)
    return store


def _backend_dicts() -> list[tuple[str, str, Any]]:
    """(module, attribute, BackendDict) of every service moto holds state for."""
    from moto.core.base_backend import BackendDict

    found = []
    for backend_dict in list(BackendDict._instances):
        module_name = backend_dict.backend.__module__
        module = importlib.import_module(module_name)
        attribute = next((name for name, value in vars(module).items() if value is backend_dict), None)
        if attribute is not None:
            found.append((module_name, attribute, backend_dict))
    return found


class _Pickler(pickle.Pickler):
    """Pickles one service's backends; a reference to any backend is stored by name, not by value."""

    def __init__(self, out: io.BytesIO, names: dict[int, Any]) -> None:
        super().__init__(out, protocol=pickle.HIGHEST_PROTOCOL)
        self.dispatch_table = _dispatch_table()
        self._names = names

    def persistent_id(self, obj: Any) -> Any:
        return self._names.get(id(obj))


class _Unpickler(pickle.Unpickler):
    def __init__(self, data: bytes, resolve: Callable[[Any], Any]) -> None:
        super().__init__(io.BytesIO(data))
        self._resolve = resolve

    def persistent_load(self, pid: Any) -> Any:
        return self._resolve(pid)


def _reference_names(dicts: list[tuple[str, str, Any]]) -> dict[int, Any]:
    """id(object) -> name, for every BackendDict, account's backends and backend."""
    names: dict[int, Any] = {}
    for module_name, attribute, backend_dict in dicts:
        names[id(backend_dict)] = ("dict", module_name, attribute)
        for account_id, per_account in dict.items(backend_dict):
            names[id(per_account)] = ("account", module_name, attribute, account_id)
            for region, backend in dict.items(per_account):
                names[id(backend)] = ("backend", module_name, attribute, account_id, region)
    return names


def capture(previous: dict[str, bytes] | None = None) -> tuple[dict[str, bytes], list[BackendKey]]:
    """Pickle every backend: ({"module:attribute": blob}, every backend's key).

    A service that cannot be pickled keeps its blob from `previous`.
    Call with the gate closed (or no server running).
    """
    dicts = _backend_dicts()
    names = _reference_names(dicts)
    blobs: dict[str, bytes] = {}
    keys: list[BackendKey] = []
    for module_name, attribute, backend_dict in dicts:
        service = f"{module_name}:{attribute}"
        backends = [(account_id, region, backend) for account_id, per_account in dict.items(backend_dict)
                    for region, backend in dict.items(per_account)]
        for attempt in range(1, PICKLE_ATTEMPTS + 1):
            out = io.BytesIO()
            try:
                _Pickler(out, names).dump({(a, r): backend.__dict__ for a, r, backend in backends})
            except RuntimeError:  # a dict changed size under the pickler: a request in flight wrote to it
                if attempt < PICKLE_ATTEMPTS:
                    continue
                logger.warning("emulator snapshot: %s changed while being saved; keeping its last snapshot",
                               service)
            except Exception as error:  # noqa: BLE001 - one service must not cost the others their snapshot
                _warn_once(service, f"emulator snapshot: cannot save {service} ({type(error).__name__}: "
                                    f"{error}); keeping its last snapshot")
            else:
                blobs[service] = out.getvalue()
                keys.extend((module_name, attribute, a, r) for a, r, _ in backends)
            break
        if service not in blobs and previous and service in previous:
            blobs[service] = previous[service]
    return blobs, keys


_warned: set[str] = set()


def _warn_once(service: str, message: str) -> None:
    if service not in _warned:
        _warned.add(service)
        logger.warning(message)


def _bare_backend(module_name: str, attribute: str, account_id: str, region: str) -> Any:
    """The backend for (account, region), created empty (no __init__: its state comes from the snapshot)."""
    backend_dict = getattr(importlib.import_module(module_name), attribute)
    per_account = backend_dict[account_id]  # creates the account's dict and registers the service for reset
    backend = dict.get(per_account, region)
    if backend is None:
        backend = backend_dict.backend.__new__(backend_dict.backend)
        dict.__setitem__(per_account, region, backend)
    return backend


def load(blobs: dict[str, bytes], keys: list[BackendKey]) -> tuple[list[str], list[str]]:
    """Put pickled backends into this process's moto; returns (services restored, services skipped)."""
    bare: dict[tuple[str, ...], Any] = {}
    for key in keys:
        bare[("backend", *key)] = _bare_backend(*key)

    def resolve(pid: Any) -> Any:
        kind, module_name, attribute, *rest = pid
        if kind == "backend" and tuple(pid) in bare:
            return bare[tuple(pid)]
        backend_dict = getattr(importlib.import_module(module_name), attribute)
        if kind == "dict":
            return backend_dict
        if kind == "account":
            return backend_dict[rest[0]]
        return backend_dict[rest[0]][rest[1]]  # a backend saved without state: a fresh one

    restored, skipped = [], []
    for service, blob in blobs.items():
        module_name, attribute = service.split(":", 1)
        try:
            states = _Unpickler(blob, resolve).load()
        except Exception as error:  # noqa: BLE001 - restore the other services
            logger.error("emulator restore: cannot restore %s (%s: %s); it starts empty",
                         service, type(error).__name__, error)
            skipped.append(service)
            continue
        for (account_id, region), state in states.items():
            backend = bare.get(("backend", module_name, attribute, account_id, region))
            if backend is None:
                backend = _bare_backend(module_name, attribute, account_id, region)
            backend.__dict__.clear()
            backend.__dict__.update(state)
        restored.append(service)
    # A bare backend whose service failed to load gets a proper empty state.
    for (*_, account_id, region), backend in bare.items():
        if not backend.__dict__:
            backend.__init__(region, account_id=account_id)
    return restored, skipped


# --- the file ----------------------------------------------------------------------


def _moto_version() -> str:
    import moto

    return moto.__version__


def write_snapshot(path: Path, blobs: dict[str, bytes], keys: list[BackendKey], meta: dict[str, Any]) -> int:
    """Write atomically (temporary file, fsync, rename, fsync the directory), mode 0600; returns its size."""
    payload = pickle.dumps(
        {"format": FORMAT, "moto": _moto_version(), "written_at": time.time(), "meta": meta,
         "keys": keys, "services": blobs},
        protocol=pickle.HIGHEST_PROTOCOL,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(payload)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return len(payload)


def read_snapshot(path: Path) -> dict[str, Any] | None:
    """The snapshot's content; None if there is none; SnapshotUnreadable if it cannot be used."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise SnapshotUnreadable(f"cannot read {path}: {error}") from error
    try:
        snapshot = pickle.loads(data)  # noqa: S301 - our own file, mode 0600, under the operator's path
    except Exception as error:  # noqa: BLE001 - truncated or foreign file
        raise SnapshotUnreadable(f"{path} is not a readable snapshot ({type(error).__name__}: {error})") from error
    if not isinstance(snapshot, dict) or snapshot.get("format") != FORMAT:
        raise SnapshotUnreadable(f"{path} has an unknown snapshot format")
    if snapshot.get("moto") != _moto_version():
        raise SnapshotUnreadable(f"{path} was written by moto {snapshot.get('moto')}, this is {_moto_version()}")
    return snapshot


def set_aside(path: Path) -> Path:
    """Rename an unusable snapshot so that it is kept for inspection and never overwritten."""
    aside = path.with_name(f"{path.name}.unreadable-{time.strftime('%Y%m%d-%H%M%S')}")
    os.replace(path, aside)
    return aside


# --- the store: restore at start, snapshots while running, one at stop -----------


class StateStore:
    """The emulator's persisted state at `path`, saved every `interval` seconds when something changed."""

    def __init__(self, path: str | Path, *, interval: float = DEFAULT_INTERVAL) -> None:
        if not interval > 0:
            raise ValueError(f"the snapshot interval must be a positive number of seconds, got {interval!r}")
        self.path = Path(path)
        self.interval = float(interval)
        self.meta: dict[str, Any] = {}
        self.last_duration = 0.0  # seconds the gate was closed for the last snapshot
        self.last_size = 0
        self._gate: RequestGate | None = None
        self._blobs: dict[str, bytes] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # one snapshot at a time
        self._owner_fd: int | None = None
        self._written: tuple[Any, ...] | None = None  # what the file holds, when this store wrote it

    def acquire(self) -> None:
        """Become the only emulator that persists to this file (released by `stop()` or the process's end)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path.with_name(f"{self.path.name}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise SnapshotInUse(f"another emulator keeps its state in {self.path}") from None
        self._owner_fd = fd

    def release(self) -> None:
        if self._owner_fd is not None:
            os.close(self._owner_fd)  # closing drops the flock
            self._owner_fd = None

    def restore(self) -> Restored | None:
        """Load the snapshot into moto (call before serving). None when there is nothing to restore.

        An unreadable snapshot is renamed aside (logged), and the emulator starts empty.
        """
        try:
            snapshot = read_snapshot(self.path)
        except SnapshotUnreadable as error:
            aside = set_aside(self.path) if self.path.exists() else None
            logger.error("emulator restore: %s; starting empty%s", error, f" (kept as {aside})" if aside else "")
            return None
        if snapshot is None:
            return None
        restored, skipped = load(snapshot["services"], [tuple(k) for k in snapshot["keys"]])
        self._blobs = {name: blob for name, blob in snapshot["services"].items() if name not in skipped}
        self.meta = dict(snapshot.get("meta") or {})
        return Restored(meta=self.meta, services=restored, skipped=skipped)

    def wrap(self, app: Callable[..., Any]) -> RequestGate:
        """The WSGI app to serve: `app` behind the gate that snapshots wait at."""
        global _gate
        _patch_sqs_long_poll()
        self._gate = _gate = RequestGate(app)
        return self._gate

    def start(self) -> None:
        """Snapshot in the background from now on."""
        self._thread = threading.Thread(target=self._run, name="aws-emulator-snapshots", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            if self._gate is not None and self._gate.dirty:
                try:
                    self.snapshot()
                except Exception:  # noqa: BLE001 - keep serving; try again at the next tick
                    logger.exception("emulator snapshot to %s failed", self.path)
                    if self._gate is not None:
                        self._gate.mark_dirty()

    def snapshot(self) -> int:
        """Take a snapshot now and write it unless the file already holds the same; returns the file's size."""
        with self._lock:
            started = time.monotonic()
            gate = self._gate.closed() if self._gate is not None else contextlib.nullcontext()
            with gate:
                blobs, keys = capture(self._blobs)
            self.last_duration = time.monotonic() - started
            self._blobs = blobs
            # Most mutating-method requests change nothing (an SQS poll of an empty queue): skip their writes.
            if self._written != (blobs, keys, self.meta) or not self.path.exists():
                self.last_size = write_snapshot(self.path, blobs, keys, self.meta)
                self._written = (blobs, keys, dict(self.meta))
            return self.last_size

    def stop(self, *, final_snapshot: bool = True) -> None:
        """Stop the background snapshots; take a last one (call after the server stopped serving)."""
        global _gate
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        try:
            if final_snapshot:
                self.snapshot()
        finally:
            if _gate is self._gate:
                _gate = None
            self.release()
