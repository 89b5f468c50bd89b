"""Plotly figures built server-side as JSON, drawn by static/js/figures.js with the vendored plotly.js.

Pages put a figure in a <script type="application/json" id="<chart id>-data"> block (no inline script: CSP)
next to <div class="chart" data-figure="<chart id>-data">. Each chart has a stable element id so a browser
test can check it is drawn. Billing and model pages build their figures with these two helpers.
"""

from __future__ import annotations

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
