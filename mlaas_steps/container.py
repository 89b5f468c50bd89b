"""A step as a container's main program: what SageMaker runs (and the local runtime, in a child process).

Kept apart from `runner`, which imports every step to warm them up: the steps import this module only.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

from mlaas_steps.contract import StepPaths
from mlaas_steps.failures import StepFailure


def run_in_container(func: Callable[[StepPaths, dict], dict], paths: StepPaths, config: dict, *,
                     failure_file: Path) -> int:
    """Run a step as a container's main program; exit status 0 or 1, the reason in `failure_file`."""
    logging.basicConfig(stream=sys.stdout, level=logging.INFO,
                        format="[%(asctime)s] %(levelname)s %(name)s: %(message)s")
    try:
        summary = func(paths, config)
    except StepFailure as failure:
        reason = failure.reason
        code = 1
    except Exception as error:  # noqa: BLE001 - logged with its traceback, reported as a sentence
        traceback.print_exc()
        reason = f"unexpected error: {type(error).__name__}: {error}"
        code = 2
    else:
        print(json.dumps({"summary_keys": sorted(summary or {})}), flush=True)
        return 0
    print(f"step failed: {reason}", file=sys.stderr, flush=True)
    try:
        failure_file.parent.mkdir(parents=True, exist_ok=True)
        failure_file.write_text(reason[:1024])  # SageMaker keeps the first 1 KB
    except OSError:
        traceback.print_exc()
    return code
