"""The build steps (preprocess, train, evaluate) and the runner that executes them locally.

Pure Python + pandas/scikit-learn: no Django, no AWS SDK, so the same package
runs inside the SageMaker step image and under the local engine. Importing
the package itself is cheap; the heavy libraries load with the step modules.
"""

from mlaas_steps.contract import STEP_FUNCTIONS, StepPaths, make_model_tarball, place_dataset, stage_inputs
from mlaas_steps.failures import StepFailure

__all__ = ["STEP_FUNCTIONS", "StepFailure", "StepPaths", "make_model_tarball", "place_dataset", "stage_inputs"]
