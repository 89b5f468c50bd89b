"""Teach moto 5.2.5 to answer browser form uploads (POST Object) with the bucket's CORS headers.

moto adds `Access-Control-Allow-Origin` and friends from the bucket's CORS rules to its answers to GET, PUT,
HEAD and DELETE (`S3Response._get_cors_headers_other`) and to preflights, but not to the answer of a
POST-policy upload (`S3Response._bucket_response_post`). AWS does; without them a browser blocks the
answer of an upload it was allowed to make, so the portal's upload page (presigned POST with a progress
bar, a preflighted request) reports a network error although the object was stored.

`apply()` is idempotent; it only adds headers, and only when the request's `Origin` matches a CORS rule of
the bucket (as for moto's other answers), so another origin still gets no Allow headers.
"""

from __future__ import annotations

import functools
from typing import Any

_PATCHED_MARK = "_mlaas_post_cors"


def is_applied() -> bool:
    from moto.s3.responses import S3Response

    return getattr(S3Response._bucket_response_post, _PATCHED_MARK, False)


def apply() -> None:
    from moto.s3.responses import S3Response

    if is_applied():
        return
    original = S3Response._bucket_response_post

    @functools.wraps(original)
    def bucket_response_post(self: Any, request: Any, bucket_name: str) -> Any:
        answer = original(self, request, bucket_name)
        if isinstance(answer, tuple) and len(answer) == 3 and isinstance(answer[1], dict):
            status, headers, body = answer
            return status, {**self._get_cors_headers_other(), **headers}, body
        return answer

    setattr(bucket_response_post, _PATCHED_MARK, True)
    S3Response._bucket_response_post = bucket_response_post
