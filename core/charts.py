"""Plotly figures built server-side as JSON, drawn by static/js/figures.js with the vendored plotly.js.

Pages put a figure in a <script type="application/json" id="<chart id>-data"> block (no inline script: CSP)
next to <div class="chart" data-figure="<chart id>-data">. Each chart has a stable element id so a browser
test can check it is drawn. Billing and model pages build their figures with these helpers: `figure` builds
the JSON directly from plain trace dicts (pages that draw many points: plotly.py validates every value, which
took most of the billing overview's time); `figure_json` serialises a plotly.py figure.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass

import plotly.graph_objects as go

LAYOUT = {"paper_bgcolor": "rgba(0,0,0,0)", "plot_bgcolor": "rgba(0,0,0,0)"}


@dataclass(frozen=True)
class Chart:
    id: str
    title: str
    figure: dict | None
    empty_text: str

    @property
    def data_id(self) -> str:
        return f"{self.id}-data"


def figure_json(fig: go.Figure, **layout) -> dict:
    """The figure as plain JSON, with a transparent background and the caller's layout on top."""
    fig.update_layout(**{**LAYOUT, **layout})
    return json.loads(fig.to_json())


@functools.cache
def _template() -> dict:
    """plotly.py's default template, as every figure it serialises carries it (computed once per process)."""
    return json.loads(go.Figure().to_json())["layout"]["template"]


def figure(traces: list[dict], **layout) -> dict:
    """A figure from plain trace dicts (each with its `type`), the JSON figure_json would give for the same traces
    and layout, without plotly.py's validation (tests pass each billing figure through plotly.py to check it)."""
    return {"data": traces, "layout": {"template": _template(), **LAYOUT, **layout}}
