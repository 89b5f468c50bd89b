"""Batch scoring: a tenant's CSV scored against one of its model versions, the rows returned with predictions.

`batch_job_create` makes the row and a presigned POST into the tenant's own location
(`<prefix>batch/<code>/input.csv`: outside `uploads/`, so the S3-event intake never takes it for training data),
signed with the tenant role's credentials. `batch_job_start` checks the uploaded file's header against the
model's training columns (a missing or unknown column is refused, naming them; the input stays where it is) and
enqueues the run after the commit. `batch_job_run` (the RQ job) claims the row (queued -> running, a filtered
update) and scores on the engine the job was created under (MLAAS_ENGINE, as test endpoints do):

- local: the step image's `serve` entry point as a child process (builds.serving, the test endpoints' runtime)
  with the artifact fetched under the tenant role's credentials; the input streamed to POST /invocations in
  chunks of BATCH_CHUNK_ROWS rows, progress saved on the row after each chunk; the output CSV (input rows plus
  prediction columns) written to `<prefix>batch/<code>/output.csv` with the tenant role's credentials.
- sagemaker: a headerless copy of the input in training column order (what a transform job's mini-batches
  must be, since only the first one would carry the header), a model and a batch transform job
  (core.aws.sagemaker), polled by the scheduler (`batch_jobs_tick`); once Completed, its JSON answers are joined
  to the input rows into the same output CSV.

The row is the truth: a job run twice finds the row already claimed; a lost one is requeued by the tick.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import tempfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from builds.models import BatchJob, ModelVersion
from tenants.models import Tenant

logger = logging.getLogger(__name__)

BATCH_CHUNK_ROWS = 1000
UPLOAD_EXPIRES = 900
DOWNLOAD_EXPIRES = 300
HEADER_BYTES = 64 * 1024
MAX_ATTEMPTS = 3
STALE_AFTER = timedelta(minutes=10)  # a running local job saves progress at least every chunk

PREDICTED_CLASS = "predicted_class"
PREDICTED_VALUE = "predicted_value"
PROBABILITY_PREFIX = "probability_"


def input_key_for(tenant: Tenant, code) -> str:
    return f"{tenant.batch_prefix}{code}/input.csv"


def output_key_for(tenant: Tenant, code) -> str:
    return f"{tenant.batch_prefix}{code}/output.csv"


# ----- the model's columns -----

def training_columns(version: ModelVersion) -> tuple[list[str], list[str], str] | None:
    """(every training column but the target, the ones the model needs, the target) from the build's data
    report (preprocessing wrote it); None for a version whose report has no columns (checked by `serve` instead).
    """
    report = version.build.data_report or {}
    columns = [c for c in report.get("columns") or [] if isinstance(c, dict) and c.get("name")]
    if not columns:
        return None
    target = next((str(c["name"]) for c in columns if c.get("type") == "target"), version.build.target)
    known = [str(c["name"]) for c in columns if c.get("type") != "target"]
    needed = [str(c["name"]) for c in columns if c.get("type") not in ("target", "ignored")]
    return known, needed, target


def header_problems(version: ModelVersion, header: list[str]) -> dict[str, list[str]] | None:
    """{"missing": [...], "unknown": [...]} when the header does not fit the model's training columns."""
    found = training_columns(version)
    if found is None:
        return None
    known, needed, _ = found
    unknown = [c for c in header if c not in set(known)]
    missing = [c for c in needed if c not in set(header)]
    return {"missing": missing, "unknown": unknown} if missing or unknown else None


def header_message(version: ModelVersion, problems: dict[str, list[str]]) -> str:
    known, _, target = training_columns(version) or ([], [], "")
    parts = []
    if problems["missing"]:
        parts.append(f"missing columns: {', '.join(problems['missing'])}")
    if problems["unknown"]:
        hint = f" (`{target}` is the target: leave it out)" if target in problems["unknown"] else ""
        parts.append(f"unknown columns: {', '.join(problems['unknown'])}{hint}")
    return (f"{'; '.join(parts)}. Model version {version.version} takes the columns {', '.join(known)}. "
            "Upload a corrected file to the same job and start it again.")


class InputHeaderError(ValidationError):
    """The input's header does not fit the model: `problems` names the missing and unknown columns."""

    def __init__(self, message: str, *, problems: dict[str, list[str]]) -> None:
        super().__init__(message)
        self.problems = problems


# ----- writes -----

def batch_job_create(*, tenant: Tenant, version: ModelVersion, actor: User | None) -> BatchJob:
    """A batch job waiting for its input (upload it with `batch_upload_presign`'s POST or `batch_input_put`)."""
    if version.tenant_id != tenant.pk:
        raise ValidationError({"model_version": "That model version belongs to another tenant."})
    if tenant.status != Tenant.Status.ACTIVE:
        raise ValidationError(f"Tenant `{tenant.slug}` is {tenant.status}; only active tenants score.")
    if version.approval_status == ModelVersion.Approval.REJECTED:
        raise ValidationError({"model_version": f"Model version {version.version} was rejected; score with an "
                                                "approved or pending version."})
    job = BatchJob(tenant=tenant, model_version=version, engine=settings.MLAAS_ENGINE, created_by=actor)
    job.input_key, job.output_key = input_key_for(tenant, job.code), output_key_for(tenant, job.code)
    job.save()
    return job


def batch_upload_presign(*, job: BatchJob) -> dict:
    """A presigned POST for the job's input key, signed by the tenant's role (it cannot reach beyond its data)."""
    from core.aws import gateways
    from tenants.credentials import tenant_assume

    tenant = job.tenant
    limit = tenant.plan.upload_size_limit_bytes
    creds = tenant_assume(tenant, purpose="batch", duration=UPLOAD_EXPIRES)
    post = gateways.tenant_s3(creds).presigned_post(tenant.bucket, job.input_key, max_bytes=limit,
                                                   expires=UPLOAD_EXPIRES)
    return {"url": post["url"], "fields": post["fields"], "key": job.input_key, "max_bytes": limit,
            "expires_in": UPLOAD_EXPIRES}


def batch_input_put(*, job: BatchJob, body: bytes) -> None:
    """The portal's own upload of a small input (the page), with the tenant role's credentials."""
    from core.aws import gateways
    from tenants.credentials import tenant_assume

    if job.status != BatchJob.Status.AWAITING_INPUT:
        raise ValidationError(f"Batch job {job.code} is {job.get_status_display().lower()}; its input is fixed.")
    limit = job.tenant.plan.upload_size_limit_bytes
    if len(body) > limit:
        raise ValidationError(f"File is {len(body):,} bytes; the {job.tenant.plan.name} plan allows at most "
                              f"{limit:,} bytes.")
    creds = tenant_assume(job.tenant, purpose="batch", duration=900)
    gateways.tenant_s3(creds).put_object(job.tenant.bucket, job.input_key, body, content_type="text/csv")


def batch_job_start(*, job: BatchJob) -> BatchJob:
    """Check the uploaded input's header against the model, fix its size and version, and queue the run."""
    from core.aws import gateways
    from core.aws.errors import AwsNotFound
    from tenants.credentials import tenant_assume
    from tenants.sizing import sizing_for

    if job.status != BatchJob.Status.AWAITING_INPUT:
        raise ValidationError(f"Batch job {job.code} is already {job.get_status_display().lower()}.")
    tenant = job.tenant
    s3 = gateways.tenant_s3(tenant_assume(tenant, purpose="batch", duration=900))
    try:
        head = s3.head_object(tenant.bucket, job.input_key)
    except AwsNotFound:
        raise ValidationError({"input": f"No input uploaded yet: POST the file to the job's upload first "
                                        f"(key {job.input_key})."}) from None
    version_id = head.get("VersionId") or ""
    size = int(head.get("ContentLength") or 0)
    header = read_header(s3.get_first_bytes(tenant.bucket, job.input_key, HEADER_BYTES, version_id))
    if not header:
        raise ValidationError({"input": "The input has no header line: its first line must name the columns."})
    problems = header_problems(job.model_version, header)
    if problems:
        raise InputHeaderError(header_message(job.model_version, problems), problems=problems)
    sizing = sizing_for(tenant.plan, size)
    instance_type, instance_count, note = transform_instances(sizing.band)
    now = timezone.now()
    with transaction.atomic():
        changed = BatchJob.objects.filter(pk=job.pk, status=BatchJob.Status.AWAITING_INPUT).update(
            status=BatchJob.Status.QUEUED, input_version=version_id, input_size=size,
            instance_type=instance_type, instance_count=instance_count, sizing_reason=sizing.reason + note,
            error_message="",
            updated_at=now)
        if changed:
            transaction.on_commit(lambda: _enqueue(job.pk))
    job.refresh_from_db()
    return job


FALLBACK_TRANSFORM_INSTANCE = "ml.m5.large"


def transform_instances(band) -> tuple[str, int, str]:
    """(instance type, count, a note) for scoring an input of this size band: its processing instances when
    batch transform runs on them, else its training ones, else FALLBACK_TRANSFORM_INSTANCE."""
    from core.aws.sagemaker import transform_instance_types

    valid = transform_instance_types()
    for instance_type, count in ((band.processing_instance_type, band.processing_instance_count),
                                 (band.training_instance_type, band.training_instance_count)):
        if instance_type in valid:
            note = "" if instance_type == band.processing_instance_type else (
                f"; {band.processing_instance_type} does not run batch transform, so the band's training "
                f"instances do")
            return instance_type, count, note
    return FALLBACK_TRANSFORM_INSTANCE, 1, (f"; neither of the band's instances runs batch transform: "
                                            f"{FALLBACK_TRANSFORM_INSTANCE}")


def read_header(first_bytes: bytes) -> list[str]:
    """The column names of a CSV's first line (a BOM and surrounding spaces dropped)."""
    text = first_bytes.decode("utf-8-sig", errors="replace")
    line = text.splitlines()[0] if text.splitlines() else ""
    if not line.strip():
        return []
    return [cell.strip() for cell in next(csv.reader([line]))]


def batch_download_link(*, job: BatchJob, expires: int = DOWNLOAD_EXPIRES) -> str:
    """A short-lived GET of the output, signed by the tenant's role."""
    from core.aws import gateways
    from tenants.credentials import tenant_assume

    gateways.platform_s3().head_object(job.tenant.bucket, job.output_key)  # AwsNotFound: a link would only 403
    s3 = gateways.tenant_s3(tenant_assume(job.tenant, purpose="batch", duration=900))
    return s3.presigned_get(job.tenant.bucket, job.output_key, expires=expires,
                            filename=f"batch-{job.code}-predictions.csv")


def _enqueue(job_id: int) -> None:
    from builds import queues

    queues.enqueue_batch_job(job_id)


# ----- the job -----

def batch_job_run(job_id: int) -> str:
    """Claim a queued job and score it on its engine; returns the status reached (or found)."""
    now = timezone.now()
    claimed = BatchJob.objects.filter(pk=job_id, status=BatchJob.Status.QUEUED).update(
        status=BatchJob.Status.RUNNING, started_at=now, updated_at=now, rows_done=0, attempts=F("attempts") + 1)
    job = BatchJob.objects.select_related("tenant", "tenant__plan", "model_version", "model_version__build",
                                          "model_version__build__algorithm").get(pk=job_id)
    if not claimed:
        return job.status  # run twice, or already finished: the row says so
    try:
        if job.engine == "sagemaker":
            return _sagemaker_start(job)
        return _local_run(job)
    except Exception as exc:  # noqa: BLE001 - becomes the job's error message
        logger.exception("batch job %s failed", job.code)
        return _fail(job, f"the batch job could not run ({type(exc).__name__}: {str(exc)[:300]}); try again later")


def _fail(job: BatchJob, message: str) -> str:
    now = timezone.now()
    BatchJob.objects.filter(pk=job.pk, status__in=BatchJob.ACTIVE).update(
        status=BatchJob.Status.FAILED, error_message=message[:2000], ended_at=now, updated_at=now)
    return BatchJob.Status.FAILED


def _succeed(job: BatchJob, rows: int) -> str:
    now = timezone.now()
    BatchJob.objects.filter(pk=job.pk, status=BatchJob.Status.RUNNING).update(
        status=BatchJob.Status.SUCCEEDED, rows_in=rows, rows_done=rows, rows_out=rows, ended_at=now, updated_at=now)
    return BatchJob.Status.SUCCEEDED


def _data_rows(path: Path) -> Iterator[list[str]]:
    """The input's data rows (blank lines skipped, as `serve` skips them), the header line excluded."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        next(reader, None)
        for row in reader:
            if row and any(cell.strip() for cell in row):
                yield row


def _header_of(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        return [cell.strip() for cell in next(csv.reader(handle), [])]


def _chunks(rows: Iterator[list[str]], size: int) -> Iterator[list[list[str]]]:
    chunk: list[list[str]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _csv_text(header: list[str] | None, rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if header is not None:
        writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def prediction_columns(prediction: dict) -> list[str]:
    """The output's added columns, from the first prediction: class and one probability per class, or value."""
    if "class" in prediction:
        return [PREDICTED_CLASS, *(f"{PROBABILITY_PREFIX}{label}" for label in prediction.get("probabilities", {}))]
    return [PREDICTED_VALUE]


def prediction_cells(prediction: dict, columns: list[str]) -> list[str]:
    if columns == [PREDICTED_VALUE]:
        value = prediction.get("value")
        return ["" if value is None else str(value)]
    probabilities = prediction.get("probabilities", {})
    return [str(prediction.get("class", "")),
            *(str(probabilities.get(c[len(PROBABILITY_PREFIX):], "")) for c in columns[1:])]


class _Scored(Exception):
    """The model refused a chunk; the message is the job's error."""


def _local_run(job: BatchJob) -> str:
    from builds import serving
    from builds.endpoints import _fetch_artifact
    from core.aws import gateways
    from tenants.credentials import tenant_assume

    tenant, version = job.tenant, job.model_version
    with tempfile.TemporaryDirectory(prefix=f"batch-{job.code}-") as scratch:
        work = Path(scratch)
        try:
            _fetch_artifact(tenant, version, work / "model")
        except Exception as exc:  # noqa: BLE001 - becomes the job's error message
            logger.exception("batch job %s: artifact fetch failed", job.code)
            return _fail(job, f"the model artifact of version {version.version} could not be fetched "
                              f"({type(exc).__name__}); build the model again or try later")
        source = work / "input.csv"
        s3 = gateways.tenant_s3(tenant_assume(tenant, purpose="batch", duration=3600))
        s3.download_file(tenant.bucket, job.input_key, source, version_id=job.input_version)
        header = _header_of(source)
        total = sum(1 for _ in _data_rows(source))
        BatchJob.objects.filter(pk=job.pk).update(rows_in=total, updated_at=timezone.now())
        log_path = work / "serve.log"
        started = serving.start(work / "model", log_path)
        try:
            problem = serving.wait_ready(started, timeout=settings.MLAAS_ENDPOINT_START_TIMEOUT_SECONDS,
                                         log_path=log_path)
            if problem:
                return _fail(job, problem)
            output = work / "output.csv"
            def progress(done: int) -> None:
                BatchJob.objects.filter(pk=job.pk, status=BatchJob.Status.RUNNING).update(
                    rows_done=done, updated_at=timezone.now())

            try:
                done = score_rows(started.port, header, source, output, progress=progress)
            except _Scored as exc:
                return _fail(job, str(exc))
        finally:
            serving.stop_started(started, work / "model")
        # A fresh session: scoring may have outlasted the first one.
        gateways.tenant_s3(tenant_assume(tenant, purpose="batch", duration=900)).upload_file(
            output, tenant.bucket, job.output_key)
    return _succeed(job, done)


def score_rows(port: int, header: list[str], source: Path, output: Path, *, progress=lambda done: None,
               chunk_rows: int | None = None) -> int:
    """Stream `source`'s data rows to the `serve` on `port` in chunks; write each row with its prediction
    columns to `output`; `progress(rows done)` after every chunk. Returns the rows scored."""
    from builds import serving

    done, columns = 0, None
    width = len(header)
    with output.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        for chunk in _chunks(_data_rows(source), chunk_rows or BATCH_CHUNK_ROWS):
            for offset, row in enumerate(chunk, start=done + 1):
                if len(row) != width:
                    raise _Scored(f"data row {offset} has {len(row)} values; the header has {width}")
            status, document = serving.invoke(port, _csv_text(header, chunk).encode(), "text/csv")
            predictions = document.get("predictions") if status == 200 else None
            if status != 200 or not isinstance(predictions, list) or len(predictions) != len(chunk):
                why = document.get("message") or f"the model server answered HTTP {status}"
                raise _Scored(f"rows {done + 1}-{done + len(chunk)} could not be scored: {why}")
            if columns is None:
                columns = prediction_columns(predictions[0])
                writer.writerow([*header, *columns])
            writer.writerows([*row, *prediction_cells(p, columns)] for row, p in zip(chunk, predictions,
                                                                                     strict=True))
            done += len(chunk)
            progress(done)
        if columns is None:
            writer.writerow(header)
    return done


# ----- SageMaker batch transform -----

def transform_input_key(job: BatchJob) -> str:
    return f"{job.tenant.batch_prefix}{job.code}/transform/input.csv"


def transform_output_prefix(job: BatchJob) -> str:
    return f"{job.tenant.batch_prefix}{job.code}/transform-output/"


def transform_job_name(job: BatchJob) -> str:
    return f"{settings.MLAAS_RESOURCE_PREFIX}-batch-{job.code.hex[:20]}"


def _sagemaker_start(job: BatchJob) -> str:
    """A headerless copy of the input in training column order, then the model and transform job."""
    from core.aws import gateways
    from core.aws.errors import AwsError
    from tenants import naming
    from tenants.credentials import tenant_assume

    tenant, version = job.tenant, job.model_version
    found = training_columns(version)
    if found is None:  # mini-batches after the first carry no header: the column order must be known
        return _fail(job, f"model version {version.version} has no recorded training columns, so its rows cannot "
                          "be ordered for a batch transform; score it on the local engine or build it again")
    s3 = gateways.tenant_s3(tenant_assume(tenant, purpose="batch", duration=3600))
    with tempfile.TemporaryDirectory(prefix=f"batch-{job.code}-") as scratch:
        source, ordered = Path(scratch) / "input.csv", Path(scratch) / "transform.csv"
        s3.download_file(tenant.bucket, job.input_key, source, version_id=job.input_version)
        header = _header_of(source)
        columns = found[0]
        where = {name: header.index(name) for name in header}
        total = 0
        with ordered.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            for row in _data_rows(source):
                writer.writerow([row[where[c]] if c in where and where[c] < len(row) else "" for c in columns])
                total += 1
        s3.upload_file(ordered, tenant.bucket, transform_input_key(job))
    BatchJob.objects.filter(pk=job.pk).update(rows_in=total, updated_at=timezone.now())
    name = transform_job_name(job)
    try:
        gateways.platform_sagemaker().create_transform_job(
            job_name=name, image_uri=version.build.algorithm.training_image_uri,
            model_data_url=f"s3://{tenant.bucket}/{version.artifact_key}", role_arn=tenant.role_arn,
            input_uri=f"s3://{tenant.bucket}/{transform_input_key(job)}",
            output_uri=f"s3://{tenant.bucket}/{transform_output_prefix(job)}", instance_type=job.instance_type,
            instance_count=job.instance_count, tags=naming.tenant_tags(tenant.slug, tenant.plan.slug))
    except AwsError as exc:
        return _fail(job, f"SageMaker refused the batch transform job: {exc}")
    BatchJob.objects.filter(pk=job.pk).update(transform_job_name=name, updated_at=timezone.now())
    return BatchJob.Status.RUNNING


def batch_job_poll(job: BatchJob) -> str:
    """One look at a running transform job: Completed -> the output joined; Failed -> its FailureReason."""
    from core.aws import gateways
    from core.aws.errors import AwsError

    try:
        status, reason = gateways.platform_sagemaker().transform_job_status(job.transform_job_name)
    except AwsError as exc:
        logger.warning("batch job %s: transform status unreadable: %s", job.code, exc)
        return job.status
    BatchJob.objects.filter(pk=job.pk).update(updated_at=timezone.now())
    if status == "Completed":
        try:
            return _sagemaker_collect(job)
        except _Scored as exc:
            return _fail(job, str(exc))
    if status in ("Failed", "Stopped"):
        return _fail(job, reason or f"SageMaker reported the batch transform job {status.lower()}")
    return job.status


def _sagemaker_collect(job: BatchJob) -> str:
    """Join the transform's answers (one JSON document per mini-batch, one per line) to the input rows."""
    from core.aws import gateways
    from tenants.credentials import tenant_assume

    tenant = job.tenant
    s3 = gateways.tenant_s3(tenant_assume(tenant, purpose="batch", duration=3600))
    out_key = f"{transform_output_prefix(job)}input.csv.out"
    predictions = list(_json_documents_predictions(s3.get_bytes(tenant.bucket, out_key).decode("utf-8")))
    with tempfile.TemporaryDirectory(prefix=f"batch-{job.code}-") as scratch:
        source, output = Path(scratch) / "input.csv", Path(scratch) / "output.csv"
        s3.download_file(tenant.bucket, job.input_key, source, version_id=job.input_version)
        header, rows = _header_of(source), list(_data_rows(source))
        if len(predictions) != len(rows):
            raise _Scored(f"the transform job returned {len(predictions)} predictions for {len(rows)} rows")
        with output.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            columns = prediction_columns(predictions[0]) if predictions else []
            writer.writerow([*header, *columns])
            writer.writerows([*row, *prediction_cells(p, columns)] for row, p in zip(rows, predictions, strict=True))
        s3.upload_file(output, tenant.bucket, job.output_key)
    return _succeed(job, len(rows))


def _json_documents_predictions(text: str) -> Iterator[dict]:
    decoder, position = json.JSONDecoder(), 0
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        if position >= len(text):
            return
        document, position = decoder.raw_decode(text, position)
        yield from document.get("predictions", [])


# ----- the scheduler's part -----

def batch_jobs_tick(now=None) -> dict[str, int]:
    """Requeue lost local jobs (queued with no worker, or running with no progress), poll transform jobs."""
    now = now or timezone.now()
    counts = {"batch_requeued": 0, "batch_abandoned": 0, "batch_polled": 0}
    stale = now - STALE_AFTER
    for job in BatchJob.objects.filter(status=BatchJob.Status.QUEUED, updated_at__lt=stale):
        BatchJob.objects.filter(pk=job.pk, status=BatchJob.Status.QUEUED).update(updated_at=now)
        _enqueue(job.pk)
        counts["batch_requeued"] += 1
    for job in BatchJob.objects.filter(status=BatchJob.Status.RUNNING, updated_at__lt=stale).exclude(
            engine="sagemaker"):
        if job.attempts >= MAX_ATTEMPTS:
            _fail(job, f"the batch job stopped without finishing {job.attempts} times; start a new one")
            counts["batch_abandoned"] += 1
        elif BatchJob.objects.filter(pk=job.pk, status=BatchJob.Status.RUNNING, updated_at__lt=stale).update(
                status=BatchJob.Status.QUEUED, rows_done=0, updated_at=now):
            _enqueue(job.pk)
            counts["batch_requeued"] += 1
    for job in BatchJob.objects.select_related("tenant").filter(
            engine="sagemaker", status=BatchJob.Status.RUNNING).exclude(transform_job_name=""):
        batch_job_poll(job)
        counts["batch_polled"] += 1
    return counts
