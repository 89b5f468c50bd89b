"""`manage.py rqworker_builds` rides out a Redis restart: it waits and starts its worker again instead of
exiting (under honcho one exiting process stops `make run`; bench/faults.py found the workers gone after it
restarted Redis)."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from redis.exceptions import ConnectionError as RedisConnectionError

from builds.worker import BuildWorker


class RedisRestartingWorker(BuildWorker):
    """Redis is down for the first two starts of the worker, then back."""

    starts: list[str] = []

    def work(self, *args, **kwargs):
        RedisRestartingWorker.starts.append(self.name)
        if len(RedisRestartingWorker.starts) <= 2:
            raise RedisConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
        return True


@pytest.fixture
def command(monkeypatch):
    from builds.management.commands import rqworker_builds

    slept: list[float] = []
    monkeypatch.setattr(rqworker_builds.time, "sleep", slept.append)
    monkeypatch.setattr(rqworker_builds.signal, "signal", lambda *args: None)  # leave pytest's handlers alone
    RedisRestartingWorker.starts = []
    return slept


def test_build_worker_command_starts_again_after_redis_connection_errors(db, clean_redis, command, capsys):
    call_command("rqworker_builds", worker_class="tests.test_build_worker_redis_loss.RedisRestartingWorker")

    assert len(RedisRestartingWorker.starts) == 3
    assert command == [1.0, 2.0]  # backs off, doubling
    assert capsys.readouterr().err.count("Redis unreachable") == 2


def test_build_worker_command_in_burst_mode_still_exits_on_redis_errors(db, clean_redis, command):
    with pytest.raises(SystemExit) as exit_info:
        call_command("rqworker_builds", "--burst",
                     worker_class="tests.test_build_worker_redis_loss.RedisRestartingWorker")

    assert (exit_info.value.code, len(RedisRestartingWorker.starts), command) == (1, 1, [])
