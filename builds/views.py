from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpResponseBadRequest, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from builds import access as build_access
from builds import selectors, services
from builds.forms import AlgorithmForm, BuildFilterForm, StartBuildForm
from builds.models import Algorithm, Build, RejectedUpload
from core.aws.errors import AwsError, AwsNotFound
from core.keyset import BadCursor, keyset_page
from tenants import access as tenant_access
from tenants.models import Tenant

PAGE_SIZE = 25
PAGE_PARAMS = ("page", "after", "before")  # keyset page links (core.keyset); a new filter or sort starts over

# Sortable columns of the build table: (column, label, sort key).
SORTABLE = [("created", "Created", "created"), ("tenant", "Tenant", "tenant"), ("plan", "Plan", "plan"),
            ("algorithm", "Algorithm", "algorithm"), ("status", "Status", "status"),
            ("duration", "Duration", "duration")]


def _query_without(request, *names: str) -> str:
    query = request.GET.copy()
    for name in names:
        query.pop(name, None)
    return query.urlencode() + "&" if query else ""


DESCENDING_FIRST = {"created", "duration"}  # newest and longest first is what one looks for


def _sort_headers(request, current: str) -> dict[str, dict]:
    """Per column: the link that sorts by it (toggling the direction when it is the current sort)."""
    base = _query_without(request, "sort", *PAGE_PARAMS)
    descending = current.startswith("-")
    headers = {}
    for column, label, key in SORTABLE:
        active = current.lstrip("-") == key
        if active:
            next_sort = key if descending else f"-{key}"
        else:
            next_sort = f"-{key}" if key in DESCENDING_FIRST else key
        headers[column] = {"label": label, "href": f"?{base}sort={next_sort}", "active": active,
                           "arrow": ("↓" if descending else "↑") if active else ""}
    return headers


@login_required
def build_list(request):
    tenant = tenant_access.user_tenant(request.user)
    form = BuildFilterForm(request.GET or None,
                           tenants=None if request.user.is_staff else tenant_access.tenants_for_user(request.user))
    filters = form.filters() if request.GET else {"sort": "-created"}
    qs, descending = selectors.build_list(base=build_access.builds_for_user(request.user), **filters)
    try:
        page = keyset_page(qs, key=selectors.SORT_KEY, descending=descending, size=PAGE_SIZE,
                           after=request.GET.get("after"), before=request.GET.get("before"),
                           last=request.GET.get("page") == "last")
    except BadCursor:
        return HttpResponseBadRequest("This page link is not valid (it was changed or belongs to another list): "
                                      "open the builds list again from its first page.")
    template = "builds/_rows.html" if request.htmx else "builds/list.html"
    return render(request, template, {
        "form": form, "keyset": page, "builds": page.items, "tenant": tenant,
        "query_without_page": _query_without(request, *PAGE_PARAMS),
        "sort_headers": _sort_headers(request, filters["sort"]),
        "filtered": any(v for k, v in filters.items() if k != "sort"),
        "uploaded": request.GET.get("uploaded", "")[:1024],
    })


def _detail_context(request, build: Build) -> dict:
    data = selectors.build_detail(build)
    version = data["version"]
    from builds.waiting import waiting_fields, waiting_for_builds

    return {"build": build, **data, "waiting": waiting_fields(build, waiting_for_builds([build])),
            "can_decide": version is not None and tenant_access.is_tenant_owner(request.user, build.tenant)}


@login_required
def build_detail(request, code):
    build = build_access.get_build_for_user(request.user, code)
    if request.htmx:
        return render(request, "builds/_detail_body.html", _detail_context(request, build))
    from builds.sizing import build_sizing_out

    return render(request, "builds/detail.html", {**_detail_context(request, build),
                                                  "build_sizing": build_sizing_out(build)})


@login_required
@require_POST
def build_cancel(request, code):
    build = build_access.get_build_for_user(request.user, code)
    try:
        services.build_cancel(build=build, actor=request.user)
        messages.success(request, "Cancel requested." if build.status == Build.Status.RUNNING
                         else "Build cancelled.")
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    return redirect("builds:detail", code=build.code)


@login_required
@require_POST
def build_retry(request, code):
    build = build_access.get_build_for_user(request.user, code)
    try:
        new = services.build_retry(build=build, actor=request.user)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect("builds:detail", code=build.code)
    except AwsError:
        # The dataset check could not reach storage: say so instead of a 500; nothing was queued.
        messages.error(request, "Could not retry the build: the storage service is unavailable; "
                                "try again in a minute.")
        return redirect("builds:detail", code=build.code)
    messages.success(request, "A new build was queued with the same dataset and settings.")
    return redirect("builds:detail", code=new.code)


@login_required
def upload(request, slug):
    from builds.sizing import plan_bands_estimates

    tenant = tenant_access.get_tenant_for_user(request.user, slug)
    datasets = selectors.tenant_datasets(tenant=tenant)
    start_form = StartBuildForm(request.POST or None)
    if request.method == "POST" and start_form.is_valid():
        data = start_form.cleaned_data
        try:
            build, _ = services.build_create(
                tenant=tenant, dataset_key=data["dataset_key"],
                algorithm_slug=data["algorithm"].slug if data["algorithm"] else None, target=data["target"],
                source=Build.Source.PORTAL, created_by=request.user)
        except ValidationError as exc:
            start_form.add_error(None, exc.messages)
        except AwsError:
            messages.error(request, "Could not start the build: the storage service is unavailable; "
                                    "try again in a minute.")
        else:
            messages.success(request, f"Build queued on {build.dataset_name}.")
            return redirect("builds:detail", code=build.code)
    return render(request, "builds/upload.html", {
        "tenant": tenant, "algorithms": selectors.algorithms(active_only=True),
        "datasets": datasets or [], "datasets_unavailable": datasets is None,
        "rejected": RejectedUpload.objects.filter(tenant=tenant)[:10], "start_form": start_form,
        "limit": tenant.plan.upload_size_limit_bytes, "uploads_open": tenant.status == Tenant.Status.ACTIVE,
        "size_bands": plan_bands_estimates(tenant.plan)})


@login_required
@require_GET
def upload_status(request, slug):
    """JSON for the upload page: has intake turned the uploaded object into a build yet?"""
    tenant = tenant_access.get_tenant_for_user(request.user, slug)
    key = request.GET.get("key", "")
    if not key.startswith(tenant.upload_prefix):
        return JsonResponse({"code": "invalid", "message": "Unknown upload."}, status=400)
    outcome = selectors.upload_outcome(tenant=tenant, key=key)
    if outcome["state"] == "build":
        from django.urls import reverse

        outcome["url"] = reverse("builds:detail", args=[outcome["build"]])
    return JsonResponse(outcome)


@login_required
def models(request, slug):
    tenant = tenant_access.get_tenant_for_user(request.user, slug)
    page = Paginator(selectors.model_versions(tenant=tenant), PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "builds/models.html", {
        "tenant": tenant, "page_obj": page, "versions": page.object_list,
        "query_without_page": _query_without(request, "page"),
        "can_decide": tenant_access.is_tenant_owner(request.user, tenant)})


@login_required
def model_detail(request, slug, version):
    """One version: metrics, insight charts (drawn from JSON blocks by static/js/figures.js), lineage, actions."""
    from builds.charts import insight_charts

    found = build_access.get_model_version_for_user(request.user, slug, version)
    lineage = selectors.lineage_values(found)
    others = selectors.model_versions(tenant=found.tenant).exclude(pk=found.pk).values_list("version", flat=True)
    return render(request, "builds/model_detail.html", {
        "tenant": found.tenant, "version": found, "charts": insight_charts(found.insight),
        "lineage": [(label, lineage[key]) for label, key in selectors.LINEAGE_ROWS],
        "other_versions": list(others[:50]),
        "can_decide": tenant_access.is_tenant_owner(request.user, found.tenant)})


@login_required
def model_compare(request, slug):
    """Two versions side by side (?a=1&b=2): metrics with the better one marked, then lineage differences."""
    tenant = tenant_access.get_tenant_for_user(request.user, slug)
    try:
        first, second = int(request.GET.get("a", "")), int(request.GET.get("b", ""))
    except ValueError:
        messages.error(request, "Choose two model versions to compare.")
        return redirect("builds:models", slug=slug)
    pair = selectors.model_version_pair(tenant=tenant, first=first, second=second)
    if len(pair) != 2 or first == second:
        missing = sorted({first, second} - {v.version for v in pair})
        messages.error(request, f"No model version {', '.join(f'v{n}' for n in missing)} to compare."
                       if missing else "Choose two different model versions to compare.")
        return redirect("builds:models", slug=slug)
    return render(request, "builds/model_compare.html", {
        "tenant": tenant, "first": pair[0], "second": pair[1], **selectors.model_comparison(*pair)})


@login_required
@require_POST
def model_decide(request, slug, version):
    found = build_access.get_model_version_for_user(request.user, slug, version)
    if not tenant_access.is_tenant_owner(request.user, found.tenant):
        raise Http404
    approve = request.POST.get("decision") == "approve"
    try:
        services.model_version_decide(version=found, approve=approve, actor=request.user)
        messages.success(request, f"Model version {found.version} {'approved' if approve else 'rejected'}.")
    except AwsError as exc:
        messages.error(request, f"The model registry refused the change: {exc}")
    next_url = request.POST.get("next", "")
    if next_url and url_has_allowed_host_and_scheme(next_url, allowed_hosts={request.get_host()},
                                                    require_https=request.is_secure()):
        return redirect(next_url)
    return redirect("builds:models", slug=slug)


@login_required
def model_download(request, slug, version):
    """Redirect to a short-lived link limited to that one artifact, signed by the tenant's role."""
    found = build_access.get_model_version_for_user(request.user, slug, version)
    try:
        url = services.model_download_link(version=found)
    except AwsNotFound:
        messages.error(request, f"The model artifact of version {found.version} is no longer in storage, so it "
                                "cannot be downloaded. Build the model again to get a new version.")
        return redirect("builds:models", slug=slug)
    except AwsError:
        messages.error(request, "The model download is unavailable right now; try again in a minute.")
        return redirect("builds:models", slug=slug)
    return redirect(url)


@tenant_access.staff_required
def queue(request):
    """Staff: per plan what runs and waits, and the longest waits with their reasons."""
    from builds.waiting import queue_overview

    return render(request, "builds/queue.html", queue_overview())


@tenant_access.staff_required
def algorithms(request):
    return render(request, "builds/algorithms.html", {"algorithms": selectors.algorithms()})


@tenant_access.staff_required
def algorithm_edit(request, slug=None):
    """Add or change a catalog algorithm; saving checks its step image in ECR and pins the digest."""
    algorithm = get_object_or_404(Algorithm, slug=slug) if slug else None
    form = AlgorithmForm(request.POST or None, instance=algorithm)
    if request.method == "POST" and form.is_valid():
        saved = form.save()
        messages.success(request, f"Algorithm {saved.name} saved; builds not yet started run "
                                  f"{saved.training_image_uri}.")
        return redirect("builds:algorithms")
    return render(request, "builds/algorithm_edit.html", {"algorithm": algorithm, "form": form})


@login_required
@require_POST
def presign(request, slug):
    """Session-authenticated twin of POST /api/v1/tenants/{slug}/uploads for the upload page."""
    from builds.uploads import upload_presign

    tenant = tenant_access.get_tenant_for_user(request.user, slug)
    try:
        size = int(request.POST.get("size", "0"))
    except ValueError:
        size = 0
    try:
        post = upload_presign(tenant=tenant, filename=request.POST.get("filename", ""), size=size,
                              algorithm=request.POST.get("algorithm", ""), target=request.POST.get("target", ""))
    except ValidationError as exc:
        fields = {k: [str(m) for m in v] for k, v in exc.message_dict.items()} if hasattr(exc, "error_dict") \
            else None
        return JsonResponse({"code": "invalid", "message": " ".join(exc.messages), "fields": fields}, status=400)
    except AwsError:
        return JsonResponse({"code": "aws_unavailable", "message": "Storage is unavailable; try again."}, status=503)
    return JsonResponse(post)


# ----- test endpoints -----

MAX_PASTED_BYTES = 1024 * 1024


@login_required
def endpoints(request, slug):
    """The tenant's test endpoints: deploy an approved version (owners), delete, paste rows and see predictions."""
    from builds.endpoints import live_endpoints

    tenant = tenant_access.get_tenant_for_user(request.user, slug)
    approved = selectors.model_versions(tenant=tenant).filter(approval_status="Approved")
    return render(request, "builds/endpoints.html", {
        "tenant": tenant, "endpoints": live_endpoints(tenant).select_related("model_version").order_by("name"),
        "approved": approved[:50], "can_deploy": tenant_access.is_tenant_owner(request.user, tenant)})


@login_required
@require_POST
def endpoint_deploy(request, slug):
    from builds.endpoints import endpoint_deploy as deploy

    tenant = tenant_access.get_tenant_for_user(request.user, slug)
    if not tenant_access.is_tenant_owner(request.user, tenant):
        raise Http404
    try:
        number = int(request.POST.get("model_version", ""))
    except ValueError:
        number = 0
    version = selectors.model_versions(tenant=tenant).filter(version=number).first()
    if version is None:
        messages.error(request, "Choose an approved model version to deploy.")
        return redirect("builds:endpoints", slug=slug)
    try:
        endpoint = deploy(tenant=tenant, version=version, actor=request.user)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, f"Deploying version {version.version} to {endpoint.name}; it answers once in "
                                  "service.")
    return redirect("builds:endpoints", slug=slug)


@login_required
@require_POST
def endpoint_delete(request, slug, name):
    from builds.endpoints import endpoint_delete as delete

    endpoint = build_access.get_endpoint_for_user(request.user, slug, name)
    if not tenant_access.is_tenant_owner(request.user, endpoint.tenant):
        raise Http404
    try:
        delete(endpoint=endpoint, reason=f"deleted by {request.user.username}")
        messages.success(request, f"Endpoint {endpoint.name} is being deleted.")
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    return redirect("builds:endpoints", slug=slug)


@login_required
def endpoint_score(request, slug, name):
    """Paste (or upload) a few rows, see one prediction per row: the same path as the invocations API."""
    from builds.endpoints import EndpointUnavailable, endpoint_invoke

    endpoint = build_access.get_endpoint_for_user(request.user, slug, name)
    context = {"tenant": endpoint.tenant, "endpoint": endpoint, "rows": request.POST.get("rows", ""),
               "predictions": None, "error": ""}
    if request.method == "POST":
        upload = request.FILES.get("file")
        body = upload.read(MAX_PASTED_BYTES + 1) if upload else context["rows"].encode()
        stripped = body.lstrip()
        content_type = "application/json" if stripped[:1] in (b"[", b"{") else "text/csv"
        if not stripped:
            context["error"] = "Paste a header line and some rows, or choose a CSV file."
        elif len(body) > MAX_PASTED_BYTES:
            context["error"] = f"That is over {MAX_PASTED_BYTES:,} bytes; score large files with the API."
        else:
            try:
                status, document = endpoint_invoke(endpoint=endpoint, body=body, content_type=content_type)
            except EndpointUnavailable as exc:
                context["error"] = str(exc)
            else:
                if status == 200:
                    context["predictions"] = _prediction_rows(document.get("predictions", []))
                else:
                    context["error"] = str(document.get("message") or "The model could not score the rows.")
    return render(request, "builds/endpoint_score.html", context)


def _prediction_rows(predictions: list[dict]) -> dict:
    """Table of predictions: row number, class or value, then one column per class probability."""
    labels = list(predictions[0].get("probabilities", {})) if predictions else []
    rows = [{"number": i, "value": p.get("class", p.get("value")),
             "probabilities": [p.get("probabilities", {}).get(label) for label in labels]}
            for i, p in enumerate(predictions, start=1)]
    return {"labels": labels, "rows": rows}


# ----- batch scoring -----

BATCH_PAGE_MAX_BYTES = 5 * 1024 * 1024  # through the portal; larger files take the API's presigned upload


@login_required
def batch_jobs(request, slug):
    """The tenant's batch scoring jobs (status, rows, progress, download) and the form to score a CSV."""
    tenant = tenant_access.get_tenant_for_user(request.user, slug)
    page = Paginator(selectors.batch_jobs(tenant=tenant), PAGE_SIZE).get_page(request.GET.get("page"))
    versions = selectors.model_versions(tenant=tenant).exclude(approval_status="Rejected")
    return render(request, "builds/batch_jobs.html", {
        "tenant": tenant, "page_obj": page, "jobs": page.object_list, "versions": versions[:50],
        "query_without_page": _query_without(request, "page"), "max_bytes": BATCH_PAGE_MAX_BYTES,
        "chosen": request.GET.get("version", "")})


@login_required
@require_POST
def batch_job_new(request, slug):
    """Create a job, upload the chosen file through the portal (tenant role's credentials), and start it."""
    from builds.batch import batch_input_put, batch_job_create, batch_job_start

    tenant = tenant_access.get_tenant_for_user(request.user, slug)
    try:
        number = int(request.POST.get("model_version", ""))
    except ValueError:
        number = 0
    version = selectors.model_versions(tenant=tenant).filter(version=number).first()
    upload = request.FILES.get("file")
    if version is None:
        messages.error(request, "Choose a model version to score with.")
        return redirect("builds:batch_jobs", slug=slug)
    if upload is None or upload.size == 0:
        messages.error(request, "Choose a CSV file to score.")
        return redirect("builds:batch_jobs", slug=slug)
    if upload.size > BATCH_PAGE_MAX_BYTES:
        messages.error(request, f"That file is over {BATCH_PAGE_MAX_BYTES:,} bytes; score large files with the "
                                "API's presigned upload (POST /api/v1/tenants/{slug}/batch-jobs).")
        return redirect("builds:batch_jobs", slug=slug)
    try:
        job = batch_job_create(tenant=tenant, version=version, actor=request.user)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect("builds:batch_jobs", slug=slug)
    try:
        batch_input_put(job=job, body=upload.read())
        batch_job_start(job=job)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect("builds:batch_job_detail", slug=slug, code=job.code)
    except AwsError:
        messages.error(request, "Could not store or read the input: the storage service is unavailable; try "
                                "again in a minute.")
        return redirect("builds:batch_job_detail", slug=slug, code=job.code)
    messages.success(request, f"Scoring {upload.name} with model version {version.version}.")
    return redirect("builds:batch_job_detail", slug=slug, code=job.code)


@login_required
def batch_job_detail(request, slug, code):
    job = build_access.get_batch_job_for_user(request.user, slug, code)
    context = {"tenant": job.tenant, "job": job, "live": job.status in job.ACTIVE}
    if request.htmx:
        return render(request, "builds/_batch_job_body.html", context)
    return render(request, "builds/batch_job_detail.html", context)


@login_required
@require_POST
def batch_job_start(request, slug, code):
    from builds.batch import batch_job_start as start

    job = build_access.get_batch_job_for_user(request.user, slug, code)
    try:
        start(job=job)
        messages.success(request, "Batch job queued.")
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    except AwsError:
        messages.error(request, "Could not read the input: the storage service is unavailable; try again.")
    return redirect("builds:batch_job_detail", slug=slug, code=job.code)


@login_required
@require_GET
def batch_job_download(request, slug, code):
    from builds.batch import batch_download_link

    job = build_access.get_batch_job_for_user(request.user, slug, code)
    if job.status != job.Status.SUCCEEDED:
        messages.error(request, "The output is ready once the batch job has succeeded.")
        return redirect("builds:batch_job_detail", slug=slug, code=job.code)
    try:
        return redirect(batch_download_link(job=job))
    except AwsNotFound:
        messages.error(request, "The output of this batch job is no longer in storage; score the input again.")
    except AwsError:
        messages.error(request, "Storage is unavailable; try again in a minute.")
    return redirect("builds:batch_job_detail", slug=slug, code=job.code)
