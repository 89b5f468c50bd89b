"""Step names are defined once, in mlaas_steps.steps; every other module uses that definition."""

from __future__ import annotations

from mlaas_steps import contract, steps


def test_step_names_every_consumer_uses_the_one_definition():
    from builds import selectors
    from builds.engines import base
    from core.aws import pipeline_definition

    assert selectors.STEP_NAMES is steps.STEP_NAMES
    assert base.STEP_NAMES is steps.STEP_NAMES
    assert (pipeline_definition.STEP_PREPROCESS, pipeline_definition.STEP_TUNE, pipeline_definition.STEP_FAIL,
            pipeline_definition.TUNED_SUFFIX) == ("Preprocess", "Tune", "MetricBelowMinimum", "Tuned")
    assert tuple(contract.STEP_FUNCTIONS) == steps.COMPUTE_STEPS == ("preprocess", "train", "evaluate")


def test_portal_step_of_a_tuned_branch_step_is_its_base_step():
    assert [steps.portal_step(name) for name in ("TuneTuned", "EvaluateTuned", "UseTuning", "Mystery")] == [
        "train", "evaluate", None, None]


def test_step_labels_name_every_portal_step():
    assert list(steps.STEP_LABELS) == list(steps.STEP_NAMES)
