"""The Content Security Policy every page sends, and the templates that keep to it (the browser proof is
tests/test_csp_browser.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


def _directives(header: str) -> dict[str, list[str]]:
    return {part.split()[0]: part.split()[1:] for part in header.split("; ") if part}


@pytest.mark.django_db
def test_pages_send_a_policy_with_no_inline_code_and_only_the_upload_origin_besides_self(client, settings):
    settings.DEBUG = False
    settings.AWS_ENDPOINT_URL = "http://127.0.0.1:4566"

    policy = _directives(client.get("/login/")["Content-Security-Policy"])

    assert policy == {
        "default-src": ["'self'"], "script-src": ["'self'"], "style-src": ["'self'"],
        "img-src": ["'self'", "data:"], "font-src": ["'self'"],
        "connect-src": ["'self'", "http://127.0.0.1:4566"], "form-action": ["'self'"],
        "frame-ancestors": ["'none'"], "base-uri": ["'none'"], "object-src": ["'none'"]}


@pytest.mark.django_db
def test_on_aws_uploads_may_go_to_the_regions_s3_only(client, settings):
    settings.AWS_ENDPOINT_URL = ""
    settings.AWS_REGION = "eu-west-1"

    policy = _directives(client.get("/login/")["Content-Security-Policy"])

    assert policy["connect-src"] == ["'self'", "https://*.s3.eu-west-1.amazonaws.com",
                                     "https://s3.eu-west-1.amazonaws.com", "https://*.s3.amazonaws.com"]


INLINE = [
    (re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*type=\"application/json\")[^>]*>"), "inline <script>"),
    (re.compile(r"\son[a-z]+\s*=", re.I), "inline event handler"),
    (re.compile(r"\sstyle\s*=", re.I), "style attribute"),
    (re.compile(r"<style\b", re.I), "<style> block"),
    (re.compile(r"javascript:", re.I), "javascript: URL"),
]


def test_no_template_has_inline_code_or_styles():
    found = [f"{path.relative_to(TEMPLATES)}:{n}: {what}"
             for path in sorted(TEMPLATES.rglob("*.html"))
             for n, line in enumerate(re.sub(r"\{#.*?#\}", "", path.read_text()).splitlines(), 1)
             for pattern, what in INLINE if pattern.search(line)]
    assert found == []
