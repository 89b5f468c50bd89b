"""Presigned uploads into a tenant's upload location, signed with the tenant's own credentials.

The file goes from the client straight to S3; the POST policy limits its size
to the plan's and its key to one object under the tenant's upload prefix.
Because it is signed by the tenant's scoped role, a URL can never reach beyond
the tenant's location on AWS either.
"""

from __future__ import annotations

import re
import uuid

from django.core.exceptions import ValidationError
from django.utils import timezone

from builds.models import Algorithm
from tenants.models import Tenant

# Letters and digits of any script stay (S3 keys are UTF-8); everything else becomes a dash.
UNSAFE_NAME_CHARS = re.compile(r"[^\w.-]+")
MAX_NAME_CHARS = 100


def clean_upload_name(filename: str) -> str:
    """A readable object name that keeps the file's extension: `売上 2024.csv` -> `売上-2024.csv`."""
    name = filename.replace("\\", "/").rsplit("/", 1)[-1]
    stem, dot, extension = name.rpartition(".")
    if not dot:
        stem, extension = name, ""
    extension = UNSAFE_NAME_CHARS.sub("", extension).lower()[:10]
    stem = UNSAFE_NAME_CHARS.sub("-", stem).strip("-._") or "dataset"
    stem = stem[: MAX_NAME_CHARS - len(extension) - 1]
    return f"{stem}.{extension}" if extension else stem


def upload_key(tenant: Tenant, filename: str) -> str:
    base = clean_upload_name(filename)
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    return f"{tenant.upload_prefix}{stamp}-{uuid.uuid4().hex[:8]}-{base}"


def upload_presign(*, tenant: Tenant, filename: str, size: int, algorithm: str = "", target: str = "") -> dict:
    errors: dict[str, str] = {}
    if tenant.status != Tenant.Status.ACTIVE:
        raise ValidationError(f"Tenant `{tenant.slug}` is {tenant.status}; uploads are closed.")
    if not filename or not filename.lower().endswith(".csv"):
        errors["filename"] = "Upload a .csv file."
    limit = tenant.plan.upload_size_limit_bytes
    if size is None or size <= 0:
        errors["size"] = "Size must be a positive number of bytes."
    elif size > limit:
        errors["size"] = f"File is {size:,} bytes; the {tenant.plan.name} plan allows at most {limit:,} bytes."
    if algorithm and not Algorithm.objects.filter(slug=algorithm, active=True).exists():
        known = ", ".join(Algorithm.objects.filter(active=True).values_list("slug", flat=True))
        errors["algorithm"] = f"Unknown algorithm `{algorithm}`; algorithms are: {known}."
    if target and (len(target) > 120 or any(ch in target for ch in "\r\n")):
        errors["target"] = "Target must be a column name of at most 120 characters."
    if errors:
        raise ValidationError(errors)
    from core.aws import gateways
    from tenants.credentials import tenant_assume

    creds = tenant_assume(tenant, purpose="upload", duration=900)
    key = upload_key(tenant, filename)
    metadata = {k: v for k, v in (("algorithm", algorithm), ("target", target)) if v}
    post = gateways.tenant_s3(creds).presigned_post(tenant.bucket, key, max_bytes=min(limit, max(size, 1)),
                                                   expires=900, metadata=metadata)
    from builds.sizing import sizing_estimate

    return {"url": post["url"], "fields": post["fields"], "key": key, "max_bytes": min(limit, size),
            "expires_in": 900, "sizing": sizing_estimate(tenant.plan, size)}
