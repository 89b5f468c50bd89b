"""The SageMaker instance types plans may offer: their size, and which job kinds SageMaker runs on them.

One home for these facts: the local runtime reads the vCPUs and memory as its limits (`runner.instance_limits`),
plans validate their size bands against the job kinds (`tenants.sizing`). No Django here: the step image
imports this module too.
"""

from __future__ import annotations

PROCESSING = "processing"
TRAINING = "training"
JOB_KINDS = (PROCESSING, TRAINING)

# vCPUs and GiB of memory of the instance types plans offer (AWS instance specs).
INSTANCE_TYPES: dict[str, tuple[int, int]] = {
    "ml.t3.medium": (2, 4), "ml.t3.large": (2, 8), "ml.t3.xlarge": (4, 16), "ml.t3.2xlarge": (8, 32),
    "ml.m5.large": (2, 8), "ml.m5.xlarge": (4, 16), "ml.m5.2xlarge": (8, 32), "ml.m5.4xlarge": (16, 64),
    "ml.m5.12xlarge": (48, 192), "ml.m5.24xlarge": (96, 384),
    "ml.m4.xlarge": (4, 16), "ml.m4.2xlarge": (8, 32), "ml.m4.4xlarge": (16, 64),
    "ml.c5.large": (2, 4), "ml.c5.xlarge": (4, 8), "ml.c5.2xlarge": (8, 16), "ml.c5.4xlarge": (16, 32),
    "ml.c5.9xlarge": (36, 72), "ml.c5.18xlarge": (72, 144),
    "ml.r5.large": (2, 16), "ml.r5.xlarge": (4, 32), "ml.r5.2xlarge": (8, 64), "ml.r5.4xlarge": (16, 128),
    "ml.g4dn.xlarge": (4, 16), "ml.g4dn.2xlarge": (8, 32),
}

# SageMaker Training does not offer the burstable ml.t3 family (Processing does): a plan that put a
# training job on one would fail at StartPipelineExecution, so plans may not.
JOB_INSTANCE_TYPES: dict[str, frozenset[str]] = {
    PROCESSING: frozenset(INSTANCE_TYPES),
    TRAINING: frozenset(t for t in INSTANCE_TYPES if not t.startswith("ml.t3.")),
}
