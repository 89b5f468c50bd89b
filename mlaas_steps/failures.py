"""The one exception a step raises when the tenant's input or settings are at fault.

`StepFailure.reason` is a sentence the tenant reads on the build page (and, in
a SageMaker container, the text written to `/opt/ml/output/failure`). It names
the problem and what to change; it never carries a traceback. Anything else a
step raises is a bug on our side and is reported as such by the runner.
"""

from __future__ import annotations


class StepFailure(Exception):
    """The step cannot go on because of the data or the build settings."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return self.reason


def quote_list(names: list[str], *, limit: int = 20) -> str:
    """`a, b, c` — long lists cut after `limit` names with a count of the rest."""
    shown = ", ".join(str(name) for name in names[:limit])
    hidden = len(names) - limit
    return f"{shown}, … ({hidden} more)" if hidden > 0 else shown
