"""Run one pipeline step in a forked child, under an instance type's limits.

The local engine's stand-in for a SageMaker job. The child is forked from the
caller, so pandas, scikit-learn and the step modules it already imported cost
nothing; in the child the step gets:

- RLIMIT_AS = the instance's memory, its CPUs via sched_setaffinity (bounded
  by the CPUs this machine has), and BLAS/OpenMP pools of that size;
- stdout and stderr (file descriptors, so C libraries too) appended to the log;
- the SM_* variables a SageMaker container would see.

The parent waits with a wall-clock limit, polls `should_cancel` and calls
`heartbeat` every `poll_interval`, kills the child's process group on timeout
or cancel, and turns every way a step can end into one `StepResult` whose
`failure_reason` is a sentence, never a traceback (that goes to the log).

The step runs on a fresh thread in the child: GNU OpenMP (bundled with
scikit-learn) keeps a per-thread pool whose workers do not survive fork(), so
a child that reused the forking thread's pool would hang if the parent had
ever fitted a model on it; a new thread gets a new pool. When the parent has
used OpenMP on its main thread the child still works, but libgomp then counts
the parent's dead workers and throttles its spinning: keep model fitting off
the thread that calls run_step (the RQ worker never fits in-process).

`container.run_in_container` is the same contract for SageMaker: the step in-process,
the failure sentence written where SageMaker shows it.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import resource
import select
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from mlaas_steps.contract import StepPaths, sagemaker_environment
from mlaas_steps.failures import StepFailure
from mlaas_steps.instances import INSTANCE_TYPES  # the limits below; tests import it from here

SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"

LOG_TAIL_BYTES = 64 * 1024
GIB = 1024**3


_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
                     "NUMEXPR_NUM_THREADS")


@dataclass
class StepResult:
    step: str
    status: str  # succeeded | failed | cancelled
    started_at: datetime  # UTC
    ended_at: datetime  # UTC
    log: str = ""  # this run's log, the last LOG_TAIL_BYTES of it
    failure_reason: str = ""
    summary: dict = field(default_factory=dict)
    # "" | step_failure | error | out_of_memory | killed | timeout | cancelled
    failure_kind: str = ""
    exit_code: int | None = None  # negative: killed by that signal

    @property
    def duration_seconds(self) -> float:
        return (self.ended_at - self.started_at).total_seconds()

    @property
    def succeeded(self) -> bool:
        return self.status == SUCCEEDED


def instance_limits(instance_type: str) -> tuple[int, int]:
    """(vCPUs, memory in bytes) of a SageMaker instance type."""
    try:
        cpus, gib = INSTANCE_TYPES[instance_type]
    except KeyError:
        raise ValueError(
            f"unknown instance type `{instance_type}`; known types: {', '.join(sorted(INSTANCE_TYPES))}"
        ) from None
    return cpus, gib * GIB


def run_step(
    func_path: str | Callable[[StepPaths, dict], dict],
    paths: StepPaths,
    config: dict,
    *,
    cpu_count: int,
    memory_bytes: int | None,
    timeout_seconds: float,
    log_path: str | os.PathLike,
    should_cancel: Callable[[], bool] | None = None,
    heartbeat: Callable[[], None] | None = None,
    poll_interval: float = 0.5,
    step_name: str | None = None,
    instance_type: str = "",
) -> StepResult:
    """Run `func(paths, config)` in a forked child under the limits; never raises for the step's sake.

    `func_path` is "package.module:function" (or "package.module.function", or
    the function itself). `memory_bytes` None or 0 means no memory limit.
    `instance_type` only names the limits in failure reasons.
    """
    func = _resolve(func_path)
    step = step_name or _step_name(func)
    warm_up()
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.touch()
    log_offset = log_path.stat().st_size
    limits = _Limits(step, max(1, min(cpu_count, len(os.sched_getaffinity(0)))), memory_bytes or 0, instance_type)

    started_at = datetime.now(UTC)
    read_fd, write_fd = os.pipe()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()  # or the child would print the parent's pending output again
    pid = os.fork()
    if pid == 0:  # child: never returns
        os.close(read_fd)
        _child(func, paths, config, limits, log_path, write_fd)
    os.close(write_fd)
    try:
        os.setpgid(pid, pid)  # also done by the child; whichever runs first wins
    except OSError:
        pass

    wait_status: int | None = None
    ended_by = ""
    output = bytearray()
    deadline = time.monotonic() + timeout_seconds
    next_check = time.monotonic() + poll_interval
    poller = select.poll()  # not select(): a busy web or worker process may hold fds above 1024
    poller.register(read_fd, select.POLLIN | select.POLLHUP)
    pipe_open = True
    try:
        while True:
            now = time.monotonic()
            wait = max(0.0, min(next_check, deadline) - now)
            if pipe_open:
                if poller.poll(int(wait * 1000)):
                    chunk = os.read(read_fd, 1 << 16)
                    if chunk:
                        output += chunk
                    else:  # the child closed its end: it is exiting, reap it promptly
                        pipe_open = False
                        poller.unregister(read_fd)
            else:
                time.sleep(min(wait, 0.002))
            finished, status = os.waitpid(pid, os.WNOHANG)
            if finished:
                wait_status = status
                if pipe_open:
                    output += _drain(read_fd)
                break
            now = time.monotonic()
            if now >= next_check:
                next_check = now + poll_interval
                if heartbeat is not None:
                    heartbeat()
                if should_cancel is not None and should_cancel():
                    ended_by = CANCELLED
                    break
            if now >= deadline:
                ended_by = "timeout"
                break
    finally:
        if wait_status is None:
            wait_status = _kill(pid)
        os.close(read_fd)
    ended_at = datetime.now(UTC)

    result = StepResult(step=step, status=FAILED, started_at=started_at, ended_at=ended_at,
                        log=_log_tail(log_path, log_offset), exit_code=_exit_code(wait_status))
    if ended_by == CANCELLED:
        result.status, result.failure_kind = CANCELLED, CANCELLED
        result.failure_reason = f"step `{step}` was cancelled"
    elif ended_by == "timeout":
        result.failure_kind = "timeout"
        result.failure_reason = f"step `{step}` exceeded its time limit of {_seconds(timeout_seconds)} s"
    else:
        _apply_outcome(result, _parse(output), wait_status, limits)
    return result


@dataclass(frozen=True)
class _Limits:
    step: str
    cpus: int
    memory_bytes: int
    instance_type: str

    def memory_text(self) -> str:
        size = self.memory_bytes
        amount = f"{size / GIB:g} GiB" if size >= GIB else f"{size / 1024**2:g} MiB"
        return f"{amount} for {self.instance_type}" if self.instance_type else amount


def _apply_outcome(result: StepResult, outcome: dict | None, wait_status: int, limits: _Limits) -> None:
    step = limits.step
    if outcome and outcome.get("status") == SUCCEEDED:
        result.status, result.summary = SUCCEEDED, outcome.get("summary") or {}
        return
    kind = (outcome or {}).get("kind")
    if kind == "step_failure":
        result.failure_kind, result.failure_reason = kind, outcome["reason"]
    elif kind == "out_of_memory":
        result.failure_kind = "out_of_memory"
        limit = f" (limit {limits.memory_text()})" if limits.memory_bytes else ""
        result.failure_reason = (f"step `{step}` ran out of memory{limit}; choose an instance type with more "
                                 "memory or upload fewer rows or columns")
    elif kind == "error":
        message = str(outcome.get("message") or "").strip().splitlines()
        detail = f"{outcome.get('type')}: {message[0][:300]}" if message else str(outcome.get("type"))
        result.failure_kind = "error"
        result.failure_reason = f"step `{step}` failed with an unexpected error: {detail}"
    elif os.WIFSIGNALED(wait_status):
        number = os.WTERMSIG(wait_status)
        name = signal.Signals(number).name if number in signal.Signals._value2member_map_ else str(number)
        limit = f" (limit {limits.memory_text()})" if limits.memory_bytes else ""
        if number == signal.SIGKILL:
            result.failure_kind = "out_of_memory"
            result.failure_reason = (f"step `{step}` was killed by the operating system ({name}), most likely "
                                     f"because it ran out of memory{limit}")
        else:
            result.failure_kind = "killed"
            result.failure_reason = f"step `{step}` crashed ({name})"
            if limits.memory_bytes and number in (signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT):
                result.failure_reason += f", possibly because it ran out of memory{limit}"
    else:
        result.failure_kind = "error"
        result.failure_reason = (f"step `{step}` exited unexpectedly (exit code {_exit_code(wait_status)}) "
                                 "without a result; see the step log")


_warm_lock = threading.Lock()
_warmed_up = False
_thread_pools = None  # threadpoolctl's scan of the loaded libraries, made once in warm_up


def warm_up() -> None:
    """Run the three steps once, in-process, on a tiny generated dataset.

    pandas, pyarrow and scikit-learn import parts of themselves on first use
    (pyarrow.dataset, the narwhals backend scikit-learn wraps DataFrames with,
    ...); a forked child would pay that again for every step, about 0.2 s.
    Done once per process, before the first fork, with the linear trainer so
    the parent never starts an OpenMP pool (see the module docstring).
    """
    global _warmed_up, _thread_pools
    with _warm_lock:
        if _warmed_up:
            return
        import tempfile

        import numpy as np
        import pandas as pd

        from mlaas_steps import evaluate, preprocess, train

        rng = np.random.default_rng(0)
        frame = pd.DataFrame({"x": rng.normal(size=60), "kind": rng.choice(["a", "b"], 60),
                              "y": rng.choice(["no", "yes"], 60)})
        pipeline_logger = logging.getLogger("mlaas_steps")
        previous = pipeline_logger.disabled
        pipeline_logger.disabled = True
        try:
            with tempfile.TemporaryDirectory(prefix="mlaas-warm-up-") as tmp:
                paths = StepPaths(Path(tmp))
                data = paths.processing_input("data")
                data.mkdir(parents=True)
                frame.to_csv(data / "warm-up.csv", index=False)
                preprocess.run(paths, {"target": "y", "problem_type": "classification"})
                train.run(paths, {"entry_point": "linear", "problem_type": "classification", "tuning_enabled": True,
                                  "max_tuning_jobs": 1})
                evaluate.run(paths, {})
        finally:
            pipeline_logger.disabled = previous
        from threadpoolctl import ThreadpoolController

        _thread_pools = ThreadpoolController()
        _warmed_up = True


# --- child -------------------------------------------------------------------------------------

def _die_with_parent() -> None:
    """Linux: the kernel kills the step if the worker that forked it dies (SIGKILL, OOM).

    Otherwise an orphaned step would run on, burning the plan's CPU, while the
    reconciler already restarts the build elsewhere.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(75)


def _child(func, paths, config, limits: _Limits, log_path: Path, write_fd: int) -> None:
    """Body of the forked child; always ends the process."""
    exit_status = 70
    try:
        try:
            os.setpgid(0, 0)  # its own group, so a kill reaches anything it starts
        except OSError:
            pass
        for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(number, signal.SIG_DFL)
        _die_with_parent()
        log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(log_fd)
        sys.stdout = open(1, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False)  # noqa: SIM115
        _configure_logging()
        cpus = sorted(os.sched_getaffinity(0))[: limits.cpus]
        os.sched_setaffinity(0, cpus)  # inherited by every thread started below
        os.environ.update({name: str(limits.cpus) for name in _THREAD_VARIABLES})
        if isinstance(paths, StepPaths):
            os.environ.update(sagemaker_environment(
                paths, step=limits.step, cpu_count=limits.cpus,
                hyperparameters=(config or {}).get("hyperparameters"), instance_type=limits.instance_type or "local"))
        if limits.memory_bytes:
            resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
        memory = limits.memory_text() if limits.memory_bytes else "unlimited"
        print(f"[{datetime.now(UTC):%Y-%m-%d %H:%M:%S}Z] step {limits.step}: pid {os.getpid()}, "
              f"{limits.cpus} CPU(s), memory {memory}", flush=True)

        outcome: dict = {}
        worker = threading.Thread(target=_run_outcome, args=(func, paths, config, limits.cpus, outcome),
                                  name=f"step-{limits.step}")
        worker.start()
        worker.join()
        payload = json.dumps(outcome, default=str).encode()
        with os.fdopen(write_fd, "wb") as pipe:
            pipe.write(payload)
        exit_status = 0
    except BaseException:  # noqa: BLE001 - the child must reach os._exit whatever happens
        try:
            traceback.print_exc()
        except BaseException:  # noqa: BLE001
            pass
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(exit_status)


def _limit_thread_pools(cpus: int) -> None:
    """Size the native thread pools for `cpus`; runs on the step's thread.

    OpenMP's limit is per thread, so it is set here. BLAS is only touched when
    its pool is larger than `cpus`: setting OpenBLAS's size, even to its
    current value, restarts its pool in a forked child, and the restarted
    workers spin, stealing a core from the step (twice the wall time on two).
    """
    from threadpoolctl import ThreadpoolController

    controller = _thread_pools or ThreadpoolController()
    controller.select(user_api="openmp").limit(limits=cpus)
    too_large = [info["filepath"] for info in controller.info()
                 if info["user_api"] == "blas" and info["num_threads"] > cpus]
    if too_large:
        controller.select(filepath=too_large).limit(limits=cpus)


def _run_outcome(func, paths, config, cpus: int, outcome: dict) -> None:
    try:
        _limit_thread_pools(cpus)  # left in place: the process ends with the step
        summary = func(paths, config)
        outcome.update(status=SUCCEEDED, summary=summary if isinstance(summary, dict) else {})
        print(f"[{datetime.now(UTC):%Y-%m-%d %H:%M:%S}Z] step succeeded", flush=True)
    except StepFailure as failure:
        outcome.update(status=FAILED, kind="step_failure", reason=failure.reason)
        print(f"step failed: {failure.reason}", flush=True)
    except MemoryError:
        traceback.print_exc()
        outcome.update(status=FAILED, kind="out_of_memory")
    except Exception as error:  # noqa: BLE001 - reported to the parent as a sentence
        traceback.print_exc()
        outcome.update(status=FAILED, kind="error", type=type(error).__name__, message=str(error))


def _configure_logging() -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("[%(asctime)s] %(levelname)s %(name)s: %(message)s"))
    pipeline_logger = logging.getLogger("mlaas_steps")
    pipeline_logger.handlers = [handler]
    pipeline_logger.setLevel(logging.INFO)
    pipeline_logger.propagate = False  # the parent's handlers may point anywhere


# --- parent helpers ----------------------------------------------------------------------------

def _resolve(func_path):
    if callable(func_path):
        return func_path
    module_name, _, attribute = func_path.partition(":") if ":" in func_path else func_path.rpartition(".")
    return getattr(importlib.import_module(module_name), attribute)


def _step_name(func) -> str:
    module = getattr(func, "__module__", "") or ""
    if module.startswith("mlaas_steps."):
        return module.rsplit(".", 1)[-1]
    return getattr(func, "__name__", "step")


def _kill(pid: int) -> int:
    for kill in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
        try:
            kill()
            break
        except (ProcessLookupError, PermissionError):
            continue
    return os.waitpid(pid, 0)[1]


def _drain(fd: int) -> bytes:
    os.set_blocking(fd, False)
    data = bytearray()
    try:
        while chunk := os.read(fd, 1 << 16):
            data += chunk
    except BlockingIOError:
        pass
    return bytes(data)


def _parse(output: bytes) -> dict | None:
    try:
        parsed = json.loads(output) if output else None
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _exit_code(wait_status: int) -> int | None:
    if os.WIFEXITED(wait_status):
        return os.WEXITSTATUS(wait_status)
    if os.WIFSIGNALED(wait_status):
        return -os.WTERMSIG(wait_status)
    return None


def _log_tail(log_path: Path, offset: int) -> str:
    with log_path.open("rb") as handle:
        size = handle.seek(0, os.SEEK_END)
        start = max(offset, size - LOG_TAIL_BYTES)
        handle.seek(start)
        text = handle.read().decode("utf-8", errors="replace")
    if start > offset:
        text = "[… earlier log lines omitted …]\n" + text.split("\n", 1)[-1]
    return text


def _seconds(value: float) -> str:
    return f"{value:g}"


# --- SageMaker container -----------------------------------------------------------------------


def run_entry_point(paths: StepPaths, config: dict) -> dict:
    """A job's container entry point, run as `run_step`'s function in the forked child.

    config: `argv`, the container's command line as the definition gives it
    (ContainerEntrypoint + ContainerArguments for processing, with /opt/ml
    already mapped onto the job's root; `["train"]` for training jobs, which
    read input/config/hyperparameters.json as SageMaker's contract says), and
    `failure_file`, where the entry point writes its reason (output/message
    for processing, output/failure for training). A non-zero exit becomes a
    StepFailure with that reason, as SageMaker shows FailureReason/ExitMessage.
    """
    import runpy

    argv = [str(part) for part in config["argv"]]
    failure_file = Path(config["failure_file"])
    if argv[0] == "train":
        from mlaas_steps import train

        code = train.main(argv[1:])
    elif Path(argv[0]).name.startswith("python") and len(argv) > 1:
        saved = sys.argv
        sys.argv = argv[1:]
        try:
            runpy.run_path(argv[1], run_name="__main__")
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        finally:
            sys.argv = saved
    else:
        raise StepFailure(f"the image has no entry point {argv[0]!r}; it offers `train` and `python3 <script>`")
    if code:
        reason = failure_file.read_text().strip() if failure_file.exists() else ""
        raise StepFailure(reason or f"the entry point exited with code {code}; see the job's log")
    return {}
