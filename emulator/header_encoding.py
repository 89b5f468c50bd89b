"""Teach moto 5.2.5 to answer non-ASCII user metadata as AWS does, instead of hanging the client.

A POST-policy upload can carry any Unicode in an `x-amz-meta-*` form field. moto stores it as given and
echoes it in the headers of HeadObject/GetObject; werkzeug cannot write a header outside Latin-1, raises
after the status line, and leaves the connection open, so the client waits for its read timeout and
retries (three minutes for the portal's settings) while intake retries the same event for ever. AWS
answers such values RFC 2047-encoded (`=?UTF-8?B?...?=`); `wrap()` does the same at the WSGI boundary.
"""

from __future__ import annotations

import email.header
from collections.abc import Callable, Iterable
from typing import Any


def encode_header_value(value: str) -> str:
    if value.isascii():
        return value
    return email.header.Header(value, "utf-8").encode(maxlinelen=10_000)


def wrap(app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    """A WSGI app whose answers carry only ASCII header values."""

    def encoded_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        def encoding_start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            headers = [(name, encode_header_value(value) if isinstance(value, str) else value)
                       for name, value in headers]
            return start_response(status, headers, exc_info)

        return app(environ, encoding_start_response)

    return encoded_app
