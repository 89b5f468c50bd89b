"""Plotly figures of a model version's insight, built server-side from the stored insight into JSON.

The insight itself is computed once by the evaluate step (mlaas_steps.insight) and stored on the version;
these functions only shape it for plotly.js (static/vendor/plotly.min.js, drawn by static/js/figures.js from a
<script type="application/json"> block: no inline script). Each chart has a stable element id.
"""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.colors import sample_colorscale

from core.charts import Chart, figure_json

MAX_IMPORTANCE_BARS = 20


def _figure(fig: go.Figure, **layout) -> dict:
    return figure_json(fig, **{"margin": {"l": 70, "r": 10, "t": 10, "b": 50}, "height": 340,
                               "legend": {"orientation": "h", "y": -0.25}, **layout})


def insight_charts(insight: dict) -> list[Chart]:
    """The charts of one version, in reading order; empty for a version registered without insight."""
    if not insight:
        return []
    if "confusion_matrix" in insight:
        charts = [confusion_matrix(insight["confusion_matrix"]), roc(insight.get("roc") or {})]
    else:
        charts = [predicted_vs_actual(insight.get("predicted_vs_actual") or {}),
                  residuals(insight.get("residuals") or {})]
    return [*charts, feature_importance(insight.get("feature_importance") or {})]


def confusion_matrix(data: dict) -> Chart:
    """Cells as filled rectangles (layout shapes) with their counts as text on one scatter trace.

    Not a plotly heatmap: plotly.js draws a heatmap's bitmap and its colour bar with inline `style` attributes,
    which the portal's CSP (style-src 'self') refuses; shapes and scatter text are styled through the CSSOM.
    """
    chart_id, title = "chart-confusion-matrix", "Confusion matrix (test split)"
    labels, matrix = data.get("labels") or [], data.get("matrix") or []
    if not labels:
        return Chart(chart_id, title, None, "No confusion matrix was computed.")
    peak = max((value for row in matrix for value in row), default=0) or 1
    xs, ys, counts, text_colours, shapes = [], [], [], [], []
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            share = value / peak
            xs.append(labels[j])
            ys.append(labels[i])
            counts.append(value)
            text_colours.append("white" if share > 0.55 else "#1b2a3a")
            shapes.append({"type": "rect", "xref": "x", "yref": "y", "x0": j - 0.5, "x1": j + 0.5,
                           "y0": i - 0.5, "y1": i + 0.5, "line": {"width": 1, "color": "white"}, "layer": "below",
                           "fillcolor": sample_colorscale("Blues", [0.08 + 0.92 * share])[0]})
    fig = go.Figure(go.Scatter(x=xs, y=ys, mode="text", text=[str(c) for c in counts], customdata=counts,
                               textfont={"color": text_colours, "size": 15}, showlegend=False,
                               hovertemplate="actual %{y}, predicted %{x}: %{customdata}<extra></extra>"))
    last = len(labels) - 0.5
    return Chart(chart_id, title, _figure(
        fig, shapes=shapes,
        xaxis={"title": "predicted", "type": "category", "categoryarray": labels, "range": [-0.5, last],
               "showgrid": False, "zeroline": False},
        yaxis={"title": "actual", "type": "category", "categoryarray": labels, "range": [last, -0.5],
               "showgrid": False, "zeroline": False}), "")


def roc(data: dict) -> Chart:
    chart_id = "chart-roc"
    title = "ROC curves, one vs rest (test split)" if data.get("one_vs_rest") else "ROC curve (test split)"
    curves = data.get("curves") or []
    if not curves:
        return Chart(chart_id, title, None, "No ROC curve: the test split has only one class.")
    fig = go.Figure()
    for curve in curves:
        fig.add_trace(go.Scatter(x=curve["fpr"], y=curve["tpr"], mode="lines",
                                 name=f"{curve['label']} (AUC {curve['auc']:.3f})"))
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance", line={"dash": "dot", "color": "gray"}))
    return Chart(chart_id, title, _figure(fig, xaxis={"title": "false positive rate", "range": [0, 1]},
                                          yaxis={"title": "true positive rate", "range": [0, 1.02]}), "")


def predicted_vs_actual(data: dict) -> Chart:
    chart_id = "chart-predicted-actual"
    actual, predicted = data.get("actual") or [], data.get("predicted") or []
    title = "Predicted vs actual (test split" + (
        f", {data['sampled']} of {data['rows']} rows)" if data.get("sampled") != data.get("rows") else ")")
    if not actual:
        return Chart(chart_id, title, None, "No predictions were recorded.")
    low, high = min(min(actual), min(predicted)), max(max(actual), max(predicted))
    fig = go.Figure([go.Scatter(x=actual, y=predicted, mode="markers", name="rows", marker={"size": 5,
                                                                                           "opacity": 0.6}),
                     go.Scatter(x=[low, high], y=[low, high], mode="lines", name="perfect",
                                line={"dash": "dot", "color": "gray"})])
    return Chart(chart_id, title, _figure(fig, xaxis={"title": "actual"}, yaxis={"title": "predicted"}), "")


def residuals(data: dict) -> Chart:
    chart_id, title = "chart-residuals", "Residuals (actual − predicted)"
    predicted, residual = data.get("predicted") or [], data.get("residual") or []
    if not residual:
        return Chart(chart_id, title, None, "No residuals were recorded.")
    fig = go.Figure([go.Scatter(x=predicted, y=residual, mode="markers", name="rows",
                                marker={"size": 5, "opacity": 0.6}),
                     go.Scatter(x=[min(predicted), max(predicted)], y=[0, 0], mode="lines", name="zero",
                                line={"dash": "dot", "color": "gray"})])
    return Chart(chart_id, title, _figure(fig, xaxis={"title": "predicted"}, yaxis={"title": "residual"}), "")


def feature_importance(data: dict) -> Chart:
    chart_id = "chart-feature-importance"
    title = "Feature importance (permutation, test split)" + ("" if data.get("complete", True)
                                                              else " – time limit reached, some features left out")
    features = (data.get("features") or [])[:MAX_IMPORTANCE_BARS]
    if not features:
        return Chart(chart_id, title, None, "No feature importance was computed.")
    ordered = list(reversed(features))  # the most important at the top
    fig = go.Figure(go.Bar(x=[f["importance"] for f in ordered], y=[f["name"] for f in ordered], orientation="h",
                           error_x={"type": "data", "array": [f["std"] for f in ordered]}))
    return Chart(chart_id, title, _figure(fig, height=max(240, 28 * len(ordered) + 80),
                                          xaxis={"title": "drop in the objective score when shuffled"},
                                          yaxis={"type": "category", "automargin": True}), "")
