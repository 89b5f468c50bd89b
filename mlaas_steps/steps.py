"""The steps of a build, named once: the portal's names and the SageMaker definition's.

The portal records and shows five steps (`STEP_NAMES`, in pipeline order).
The shared SageMaker pipeline names its steps differently (`Preprocess`,
`Train`/`Tune`, `Evaluate`, `CheckMetric`, `Register`, the `MetricBelowMinimum`
fail step and the `UseTuning` routing condition), and every step after the
tuning choice exists twice, the tuned branch's with `TUNED_SUFFIX`.
`portal_step` maps a definition step to the portal step it reports as.

Engines, selectors, services, the pipeline definition and the step contract
import these; no other module spells a step name.
"""

from __future__ import annotations

# The portal's steps, in pipeline order.
PREPROCESS = "preprocess"
TRAIN = "train"
EVALUATE = "evaluate"
CONDITION = "condition"
REGISTER = "register"
STEP_NAMES: tuple[str, ...] = (PREPROCESS, TRAIN, EVALUATE, CONDITION, REGISTER)
# The steps that run our code in a container (the others are pipeline logic).
COMPUTE_STEPS: tuple[str, ...] = (PREPROCESS, TRAIN, EVALUATE)
PROCESSING_STEPS: tuple[str, ...] = (PREPROCESS, EVALUATE)  # processing jobs; train is a training job
# What a tenant reads in a failure reason ("The data preparation step failed: ...").
STEP_LABELS = {PREPROCESS: "data preparation", TRAIN: "training", EVALUATE: "evaluation",
               CONDITION: "quality check", REGISTER: "model registration"}

# Step names in the SageMaker pipeline definition (as ListPipelineExecutionSteps reports them).
DEFINITION_PREPROCESS = "Preprocess"
DEFINITION_USE_TUNING = "UseTuning"
DEFINITION_TRAIN = "Train"
DEFINITION_TUNE = "Tune"
DEFINITION_EVALUATE = "Evaluate"
DEFINITION_CHECK_METRIC = "CheckMetric"
DEFINITION_REGISTER = "Register"
DEFINITION_FAIL = "MetricBelowMinimum"
TUNED_SUFFIX = "Tuned"

# Definition step (without TUNED_SUFFIX) -> the portal step it reports as; None: routing only.
DEFINITION_TO_PORTAL: dict[str, str | None] = {
    DEFINITION_PREPROCESS: PREPROCESS,
    DEFINITION_USE_TUNING: None,
    DEFINITION_TRAIN: TRAIN,
    DEFINITION_TUNE: TRAIN,
    DEFINITION_EVALUATE: EVALUATE,
    DEFINITION_CHECK_METRIC: CONDITION,
    DEFINITION_FAIL: CONDITION,
    DEFINITION_REGISTER: REGISTER,
}


def definition_base_name(definition_step: str) -> str:
    """`EvaluateTuned` -> `Evaluate`: both branches report as the same step."""
    return definition_step.removesuffix(TUNED_SUFFIX)


def portal_step(definition_step: str) -> str | None:
    """The portal step a definition step reports as; None for routing steps and unknown names."""
    return DEFINITION_TO_PORTAL.get(definition_base_name(definition_step))
