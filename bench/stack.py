"""A private copy of what `make run` starts, for bench/load.py and bench/faults.py: its own Redis, PostgreSQL
cluster, AWS emulator, web server and workers, on free ports in a temporary directory, so a run never touches
the machine's shared Redis (6379), PostgreSQL (5432) or a `make run` on :8000.

Each part is a child process the benches can SIGKILL and start again (`kill`, `start`). Needs redis-server and
PostgreSQL's initdb/pg_ctl (/usr/lib/postgresql/*/bin); without pg_ctl it falls back to SQLite (and faults.py
then skips the PostgreSQL restart, saying so).
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = str(ROOT / ".venv" / "bin" / "python")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f} s")


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(found[-1]).parent if found else None


class Stack:
    """Redis, PostgreSQL, emulator, web and workers of one bench run."""

    def __init__(self, *, build_workers: int = 2, keep: bool = False, account_limit: int = 20,
                 web_workers: int | None = None):
        self.dir = Path(tempfile.mkdtemp(prefix="mlaas-bench-"))
        self.keep = keep
        self.build_workers = build_workers
        self.web_workers = web_workers  # None: gunicorn.conf.py's (WEB_CONCURRENCY, else 2)
        self.ports = {"redis": free_port(), "pg": free_port(), "emulator": free_port(), "web": free_port()}
        self.procs: dict[str, subprocess.Popen] = {}
        self.spawned: list[subprocess.Popen] = []  # every process ever started, restarts included
        self.pg = _pg_bin()
        self.base_url = f"http://127.0.0.1:{self.ports['web']}"
        if self.pg:
            db = f"postgres://postgres@127.0.0.1:{self.ports['pg']}/mlaas"
        else:
            db = f"sqlite:///{self.dir / 'db.sqlite3'}"
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "mlaas_portal.settings",
            "DATABASE_URL": db,
            "REDIS_URL": f"redis://127.0.0.1:{self.ports['redis']}/0",
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{self.ports['emulator']}",
            "MLAAS_EMULATOR_STATE": str(self.dir / "emulator.json"),
            "MLAAS_SCRATCH_DIR": str(self.dir / "scratch"),
            "PORTAL_ORIGIN": self.base_url,
            "MLAAS_ACCOUNT_CONCURRENT_LIMIT": str(account_limit),
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }

    # --- parts ---------------------------------------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen:
        log = open(self.dir / f"{name}.log", "ab")  # noqa: SIM115 - lives as long as the process
        proc = subprocess.Popen(argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.procs[name] = proc
        self.spawned.append(proc)
        return proc

    def start(self, name: str) -> None:
        """Start (or start again) one part by name."""
        if name == "redis":
            self._spawn("redis", ["redis-server", "--port", str(self.ports["redis"]), "--bind", "127.0.0.1",
                                  "--save", "", "--appendonly", "no", "--dir", str(self.dir)])
            _wait_port(self.ports["redis"])
        elif name == "postgres":
            if not (self.dir / "pg").exists():
                subprocess.run([str(self.pg / "initdb"), "-D", str(self.dir / "pg"), "-U", "postgres",
                                "--auth=trust", "-E", "UTF8"], check=True, capture_output=True,
                               **self._pg_user())
            subprocess.run([str(self.pg / "pg_ctl"), "-D", str(self.dir / "pg"), "-w", "-l",
                            str(self.dir / "postgres.log"), "-o",
                            f"-p {self.ports['pg']} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off",
                            "start"], check=True, capture_output=True, **self._pg_user())
            _wait_port(self.ports["pg"])
        elif name == "emulator":
            self._spawn("emulator", [PY, "-m", "emulator", "--port", str(self.ports["emulator"]), "--state",
                                     self.env["MLAAS_EMULATOR_STATE"], "--snapshot",
                                     str(self.dir / "emulator-state.pickle"), "--snapshot-interval", "1"])
            _wait_port(self.ports["emulator"])
        elif name == "web":
            # The product's server settings (gunicorn.conf.py, as the Procfile), on this stack's port.
            self._spawn("web", [str(ROOT / ".venv/bin/gunicorn"), "mlaas_portal.wsgi", "--config",
                                str(ROOT / "gunicorn.conf.py"), "--bind", f"127.0.0.1:{self.ports['web']}",
                                *(["--workers", str(self.web_workers)] if self.web_workers else [])])
            _wait_port(self.ports["web"])
        elif name.startswith("builds"):
            self._spawn(name, [PY, "manage.py", "rqworker_builds", "--with-scheduler"])
        elif name == "ops":
            self._spawn("ops", [PY, "manage.py", "rqworker", "provisioning", "default", "billing"])
        elif name in ("batch", "webhooks"):  # their own queues and workers, as the Procfile
            self._spawn(name, [PY, "manage.py", "rqworker", name])
        elif name == "intake":
            self._spawn("intake", [PY, "manage.py", "run_intake"])
        elif name == "scheduler":
            self._spawn("scheduler", [PY, "manage.py", "run_scheduler"])
        else:
            raise ValueError(f"unknown part {name!r}")

    def _pg_user(self) -> dict:
        """initdb refuses to run as root: run PostgreSQL as the `postgres` system user when we are root."""
        if os.geteuid() != 0:
            return {}
        import pwd

        user = pwd.getpwnam("postgres")
        os.chown(self.dir, user.pw_uid, user.pw_gid)
        return {"user": user.pw_uid, "group": user.pw_gid}

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        if name == "postgres":
            subprocess.run([str(self.pg / "pg_ctl"), "-D", str(self.dir / "pg"), "-m", "immediate", "stop"],
                           check=False, capture_output=True, **self._pg_user())
            return
        proc = self.procs.get(name)
        if proc and proc.poll() is None:
            os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:  # a build worker waits for its running build: do not
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=20)
        if proc:  # the build worker's work horse runs in the worker's session: end what is left of it
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def manage(self, *args: str, check: bool = True) -> str:
        done = subprocess.run([PY, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True, text=True)
        if check and done.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    @property
    def workers(self) -> list[str]:
        return [f"builds{n}" for n in range(self.build_workers)]

    def up(self, *, seed: bool = True) -> None:
        """Everything `make run` starts, in its order; `seed_demo` makes the demo tenants and users."""
        self.start("redis")
        if self.pg:
            self.start("postgres")
            subprocess.run([str(self.pg / "createdb"), "-h", "127.0.0.1", "-p", str(self.ports["pg"]), "-U",
                            "postgres", "mlaas"], check=True, capture_output=True)
        self.start("emulator")
        self.manage("migrate", "--noinput")
        self.manage("platform_bootstrap")
        # As scripts/run.sh: without the deployed definition every build fails at start ("not deployed").
        self.manage("deploy_pipeline")
        for name in [*self.workers, "ops", "batch", "webhooks", "intake", "scheduler", "web"]:
            self.start(name)
        if seed:
            self.manage("seed_demo", "--no-samples")  # only the builds the bench uploads

    def down(self) -> None:
        for name in reversed(list(self.procs)):
            try:
                self.kill(name, signal.SIGTERM)
            except Exception as exc:  # noqa: BLE001 - stop the others all the same
                print(f"stopping {name}: {exc}", file=sys.stderr)
        for proc in self.spawned:  # whatever is left (a restarted part, a build's work horse)
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if self.pg and (self.dir / "pg").exists():
            self.kill("postgres")
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)
        else:
            print(f"kept {self.dir}", file=sys.stderr)

    def __enter__(self) -> Stack:
        try:
            self.up()
        except BaseException:
            self.down()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.down()
