"""The model version page's insight charts in a real Chromium under the production CSP: a tenant opens a trained
classifier's and a regression model's versions and every Plotly figure is drawn with its traces (confusion
matrix, ROC, predicted vs actual, residuals, feature importance), with no console error and no CSP violation.

The insight is what the evaluate step computes on the bundled samples (mlaas_steps), stored on the versions as a
build's registration stores it. Skipped without /usr/bin/chromium (CI has it); marked `browser`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_browser import CHROMIUM, PASSWORD, chromium, log_in, screenshots_on_failure  # noqa: F401
from tests.test_csp_browser import Watch

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing: apt-get install -y chromium"),
]

CLASSIFIER_CHARTS = ["chart-confusion-matrix", "chart-roc", "chart-feature-importance"]
CELLS = "id => document.querySelectorAll('#' + id + ' .shapelayer path').length"
REGRESSION_CHARTS = ["chart-predicted-actual", "chart-residuals", "chart-feature-importance"]

# Per chart: the figure's traces as plotly.js drew them (its graph div carries `data`), and the SVG it drew.
DRAWN = """ids => ids.map(id => {
  const el = document.getElementById(id);
  return [id, !!el && el.classList.contains('js-plotly-plot'), el && el.data ? el.data.map(t => t.type || 'scatter')
          : [], el ? el.querySelectorAll('.main-svg').length > 0 : false];
})"""


@pytest.fixture(scope="module")
def evaluations(tmp_path_factory) -> dict[str, dict]:
    """evaluation.json of a classifier (breast cancer) and a regression model (diabetes), trained here once."""
    from mlaas_steps import StepPaths, evaluate, place_dataset, preprocess, train
    from mlaas_steps.sample_data import SAMPLES, write_sample_csvs

    root = tmp_path_factory.mktemp("insight")
    samples = write_sample_csvs(root / "samples")
    found = {}
    for name in ("breast_cancer", "diabetes"):
        paths = StepPaths(root / name)
        place_dataset(paths, samples[name])
        config = {"target": SAMPLES[name]["target"], "problem_type": SAMPLES[name]["problem_type"]}
        preprocess.run(paths, config)
        train.run(paths, {"entry_point": "hist_gradient_boosting", "problem_type": config["problem_type"]})
        found[name] = evaluate.run(paths, {"insight_seconds": 20})
    return found


@pytest.mark.django_db(transaction=True)
def test_model_version_insight_charts_render_without_errors_or_csp_violations(
        chromium, live_server, reference_data, settings, evaluations):  # noqa: F811
    from builds.models import ModelVersion
    from tests.web_support import create_build, create_member, create_tenant

    settings.DEBUG = False  # production: the strict CSP applies to every page
    tenant = create_tenant(slug="insight-co", name="Insight Co")
    owner = create_member(tenant, role="owner", password=PASSWORD)
    classifier = create_build(tenant, algorithm="gbm-classifier", version=True).model_version
    regressor = create_build(tenant, algorithm="gbm-regressor", version=True).model_version
    for version, name in ((classifier, "breast_cancer"), (regressor, "diabetes")):
        ModelVersion.objects.filter(pk=version.pk).update(insight=evaluations[name]["insight"],
                                                          metrics=evaluations[name]["metrics"])

    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    watch = Watch(context)
    drawn, violations = {}, []
    with screenshots_on_failure("model-insight", context):
        page = context.new_page()
        log_in(page, live_server.url, owner.username)
        for version, chart_ids in ((classifier, CLASSIFIER_CHARTS), (regressor, REGRESSION_CHARTS)):
            url = f"{live_server.url}/builds/models/{tenant.slug}/{version.version}/"
            watch.visit(page, url)
            for chart_id in chart_ids:
                page.wait_for_selector(f"#{chart_id}.js-plotly-plot .main-svg", timeout=15_000)
            drawn[version.version] = page.evaluate(DRAWN, chart_ids)
            if version == classifier:
                cells = page.evaluate(CELLS, "chart-confusion-matrix")
            violations += [f"{url}: {v}" for v in watch.violations(page)]
    context.close()

    assert drawn == {
        classifier.version: [["chart-confusion-matrix", True, ["scatter"], True],
                             ["chart-roc", True, ["scatter", "scatter"], True],
                             ["chart-feature-importance", True, ["bar"], True]],
        regressor.version: [["chart-predicted-actual", True, ["scatter", "scatter"], True],
                            ["chart-residuals", True, ["scatter", "scatter"], True],
                            ["chart-feature-importance", True, ["bar"], True]]}
    assert cells == 4  # the 2 x 2 matrix's cells are drawn
    assert (violations, watch.console, watch.errors) == ([], [], [])
    for url, header in watch.headers.items():
        assert "script-src 'self'" in header and "'unsafe-inline'" not in header, (url, header)
