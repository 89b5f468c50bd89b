"""RQ worker that imports the training stack once, so each forked build starts warm."""

from __future__ import annotations

from rq import Worker


class PreloadedWorker(Worker):
    def __init__(self, *args, **kwargs):
        import pandas  # noqa: F401 - preloaded for the forked work horses
        import sklearn.ensemble  # noqa: F401
        import sklearn.linear_model  # noqa: F401

        import builds.pipeline.preprocess  # noqa: F401
        import builds.pipeline.train  # noqa: F401
        from builds.pipeline.runner import warm_up

        warm_up()  # lazily loaded parts of pyarrow/scikit-learn, once, before any fork
        super().__init__(*args, **kwargs)
