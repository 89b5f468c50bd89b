"""run_step: limits, timeouts, cancellation, crashes — and the parent keeps working after each.

Plain pytest, no Django:
    .venv/bin/python -m pytest builds/tests/test_step_runner.py -p no:django -q
"""

from __future__ import annotations

import json
import os
import signal
import time
from datetime import UTC
from pathlib import Path

import numpy as np
import pytest

from mlaas_steps import StepFailure, StepPaths
from mlaas_steps.runner import INSTANCE_TYPES, LOG_TAIL_BYTES, instance_limits, run_step

GIB = 1024**3


# Step functions; the child is forked, so they need no importable path.

def quick(paths, config):
    return {"answer": 42, "pid": os.getpid()}


def sleepy(paths, config):
    print("going to sleep", flush=True)
    time.sleep(60)
    return {}


def hog(paths, config):
    blocks = []
    for _ in range(64):
        blocks.append(np.ones(GIB // 8))  # 1 GiB each, touched
    return {"blocks": len(blocks)}


def killed(paths, config):
    os.kill(os.getpid(), signal.SIGKILL)


def broken(paths, config):
    raise ValueError("bad thing\nsecond line")


def refuses(paths, config):
    raise StepFailure("column `churn` not found; columns are: a, b")


def noisy(paths, config):
    print("python line", flush=True)
    os.write(1, b"fd line from C\n")
    os.write(2, b"stderr line\n")
    for index in range(3000):
        print(f"filler {index:05d} " + "y" * 60)
    print("last line", flush=True)
    return {}


def environment(paths, config):
    names = ("SM_MODEL_DIR", "SM_CHANNEL_TRAIN", "SM_CHANNEL_VALIDATION", "SM_OUTPUT_DATA_DIR", "SM_HPS",
             "SM_NUM_CPUS", "OMP_NUM_THREADS", "SM_HP_MAX_ITER")
    return {"cpus": sorted(os.sched_getaffinity(0)), "environ": {name: os.environ.get(name) for name in names}}


def run(tmp_path: Path, func, **options):
    defaults = {"cpu_count": 1, "memory_bytes": 4 * GIB, "timeout_seconds": 30,
                "log_path": tmp_path / "step.log", "poll_interval": 0.05}
    return run_step(func, StepPaths(tmp_path), {}, **{**defaults, **options})


def assert_runner_still_works(tmp_path: Path) -> None:
    result = run(tmp_path, quick)
    assert (result.status, result.summary["answer"]) == ("succeeded", 42)
    assert result.summary["pid"] != os.getpid()


def test_successful_step_returns_its_summary_and_utc_times(tmp_path):
    result = run(tmp_path, quick, step_name="preprocess")
    assert (result.step, result.status, result.failure_reason, result.failure_kind) == (
        "preprocess", "succeeded", "", "")
    assert result.summary["answer"] == 42
    assert result.started_at.tzinfo is UTC and result.ended_at >= result.started_at
    assert result.exit_code == 0


def test_timeout_kills_the_child(tmp_path):
    started = time.monotonic()
    result = run(tmp_path, sleepy, timeout_seconds=1, step_name="train")
    assert time.monotonic() - started < 10
    assert (result.status, result.failure_kind) == ("failed", "timeout")
    assert result.failure_reason == "step `train` exceeded its time limit of 1 s"
    assert result.exit_code == -signal.SIGKILL
    assert "going to sleep" in result.log
    assert_runner_still_works(tmp_path)


def test_memory_limit_gives_an_out_of_memory_reason(tmp_path):
    # RLIMIT_AS counts address space: leave the interpreter what it already has, plus 1 GiB.
    with open("/proc/self/status") as status:
        current = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize:"))
    limit = (current // GIB + 2) * GIB
    result = run(tmp_path, hog, memory_bytes=limit, instance_type="ml.t3.medium", step_name="train")
    assert (result.status, result.failure_kind) == ("failed", "out_of_memory")
    assert result.failure_reason == (
        f"step `train` ran out of memory (limit {limit // GIB} GiB for ml.t3.medium); "
        "choose an instance type with more memory or upload fewer rows or columns")
    assert "MemoryError" in result.log
    assert_runner_still_works(tmp_path)


def test_child_killed_by_the_kernel_is_reported_as_out_of_memory(tmp_path):
    result = run(tmp_path, killed, memory_bytes=16 * GIB, instance_type="ml.m5.xlarge", step_name="train")
    assert (result.status, result.failure_kind, result.exit_code) == ("failed", "out_of_memory", -signal.SIGKILL)
    assert result.failure_reason == ("step `train` was killed by the operating system (SIGKILL), most likely "
                                     "because it ran out of memory (limit 16 GiB for ml.m5.xlarge)")
    assert_runner_still_works(tmp_path)


def test_unexpected_exception_becomes_a_sentence(tmp_path):
    result = run(tmp_path, broken, step_name="evaluate")
    assert (result.status, result.failure_kind) == ("failed", "error")
    assert result.failure_reason == "step `evaluate` failed with an unexpected error: ValueError: bad thing"
    assert "Traceback (most recent call last)" in result.log
    assert "Traceback" not in result.failure_reason
    assert_runner_still_works(tmp_path)


def test_step_failure_is_passed_through(tmp_path):
    result = run(tmp_path, refuses)
    assert (result.status, result.failure_kind) == ("failed", "step_failure")
    assert result.failure_reason == "column `churn` not found; columns are: a, b"


def test_cancel_kills_the_child_and_heartbeats_run(tmp_path):
    beats = []
    result = run(tmp_path, sleepy, step_name="train", heartbeat=lambda: beats.append(time.monotonic()),
                 should_cancel=lambda: len(beats) >= 4)
    assert (result.status, result.failure_kind) == ("cancelled", "cancelled")
    assert result.failure_reason == "step `train` was cancelled"
    assert len(beats) == 4
    assert result.duration_seconds < 5
    assert_runner_still_works(tmp_path)


def test_an_exception_in_the_parent_loop_still_kills_the_child(tmp_path):
    def failing_heartbeat():
        raise RuntimeError("database went away")

    with pytest.raises(RuntimeError):
        run(tmp_path, sleepy, heartbeat=failing_heartbeat)
    assert_runner_still_works(tmp_path)


def test_log_captures_python_and_c_output_and_keeps_the_tail(tmp_path):
    (tmp_path / "step.log").write_text("an earlier step's output\n")
    result = run(tmp_path, noisy)
    assert result.status == "succeeded"
    assert len(result.log.encode()) <= LOG_TAIL_BYTES + 100
    assert result.log.startswith("[… earlier log lines omitted …]\n")
    assert "filler 02999 " + "y" * 60 + "\nlast line\n" in result.log
    assert result.log.rstrip().endswith("step succeeded")
    full = (tmp_path / "step.log").read_text()
    assert full.startswith("an earlier step's output\n")
    assert "fd line from C" in full and "stderr line" in full
    assert "an earlier step's output" not in result.log


def test_cpus_environment_and_sagemaker_variables(tmp_path):
    config = {"hyperparameters": {"max_iter": 50}}
    result = run_step(environment, StepPaths(tmp_path), config, cpu_count=1, memory_bytes=4 * GIB,
                      timeout_seconds=30, log_path=tmp_path / "log", step_name="train")
    assert len(result.summary["cpus"]) == 1
    environ = result.summary["environ"]
    assert environ["SM_MODEL_DIR"] == str(tmp_path / "model")
    assert environ["SM_CHANNEL_TRAIN"] == str(tmp_path / "input/data/train")
    assert environ["SM_CHANNEL_VALIDATION"] == str(tmp_path / "input/data/validation")
    assert environ["SM_OUTPUT_DATA_DIR"] == str(tmp_path / "output/data")
    assert json.loads(environ["SM_HPS"]) == {"max_iter": 50}
    assert (environ["SM_NUM_CPUS"], environ["OMP_NUM_THREADS"], environ["SM_HP_MAX_ITER"]) == ("1", "1", "50")
    assert "SM_MODEL_DIR" not in os.environ


def test_instance_limits():
    assert instance_limits("ml.m5.large") == (2, 8 * GIB)
    assert instance_limits("ml.m5.xlarge") == (4, 16 * GIB)
    assert instance_limits("ml.c5.2xlarge") == (8, 16 * GIB)
    assert instance_limits("ml.t3.medium") == (2, 4 * GIB)
    assert "ml.m5.2xlarge" in INSTANCE_TYPES
    with pytest.raises(ValueError, match=r"unknown instance type `ml.z9.huge`; known types: ml.c5.18xlarge, "):
        instance_limits("ml.z9.huge")


def test_step_child_dies_with_the_worker_that_forked_it(tmp_path):
    """A SIGKILLed worker must not leave its step running on (PR_SET_PDEATHSIG)."""
    import os
    import signal
    import subprocess
    import sys
    import textwrap
    import time

    import psutil

    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
        from mlaas_steps.contract import StepPaths
        from mlaas_steps.runner import run_step

        def sleepy(paths, config):
            time.sleep(60)
            return {{}}

        run_step(sleepy, StepPaths({str(tmp_path)!r}), {{}}, cpu_count=1, memory_bytes=None,
                 timeout_seconds=120, log_path={str(tmp_path / "step.log")!r})
    """)
    worker = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 20
        children: list = []
        while time.monotonic() < deadline and not children:
            children = psutil.Process(worker.pid).children()
            time.sleep(0.05)
        assert children, "the step child never started"
        step_pid = children[0].pid
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(10)
        gone, alive = psutil.wait_procs([psutil.Process(step_pid)], timeout=5)
        assert [p.pid for p in gone] == [step_pid] and alive == []
    finally:
        if worker.poll() is None:
            worker.kill()
