"""Strict parsing of settings from environment variables.

Every value the portal reads from the environment passes through one of these
helpers, so a bad value stops start-up with ImproperlyConfigured naming the
variable instead of surfacing later as an odd runtime error.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from urllib.parse import urlparse

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _raw(name: str, default: str | None) -> str | None:
    value = os.environ.get(name)
    return default if value is None else value


def env_str(name: str, default: str | None = None, *, required: bool = False) -> str:
    value = _raw(name, default)
    if value is None or (required and value == ""):
        raise ImproperlyConfigured(f"{name} is required but not set")
    return value


def env_bool(name: str, default: bool) -> bool:
    value = _raw(name, None)
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (true/false/1/0), got {value!r}")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    value = _raw(name, None)
    if value is None:
        return default
    try:
        parsed = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}") from None
    if minimum is not None and parsed < minimum:
        raise ImproperlyConfigured(f"{name} must be >= {minimum}, got {parsed}")
    return parsed


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = _raw(name, default) or default
    if value not in choices:
        raise ImproperlyConfigured(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def env_list(name: str, default: str) -> list[str]:
    value = _raw(name, default) or ""
    return [item.strip() for item in value.split(",") if item.strip()]


def env_url(
    name: str,
    default: str | None,
    *,
    schemes: tuple[str, ...],
    allow_empty: bool = False,
    validate: Callable[[str], None] | None = None,
) -> str:
    value = _raw(name, default)
    if value is None or value == "":
        if allow_empty:
            return ""
        raise ImproperlyConfigured(f"{name} is required but not set")
    parsed = urlparse(value)
    if parsed.scheme not in schemes:
        raise ImproperlyConfigured(
            f"{name} must be a URL with scheme {' or '.join(schemes)}, got {value!r}"
        )
    if parsed.scheme not in ("sqlite",) and not parsed.netloc:
        raise ImproperlyConfigured(f"{name} must include a host, got {value!r}")
    if validate:
        validate(value)
    return value
