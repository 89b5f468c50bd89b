from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpResponseBadRequest, JsonResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from builds import access as build_access
from builds import selectors, services
from builds.forms import BuildFilterForm, StartBuildForm
from builds.models import Build, RejectedUpload
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
    return {"build": build, **data,
            "can_decide": version is not None and tenant_access.is_tenant_owner(request.user, build.tenant)}


@login_required
def build_detail(request, code):
    build = build_access.get_build_for_user(request.user, code)
    template = "builds/_detail_body.html" if request.htmx else "builds/detail.html"
    return render(request, template, _detail_context(request, build))


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
    messages.success(request, "A new build was queued with the same dataset and settings.")
    return redirect("builds:detail", code=new.code)


@login_required
def upload(request, slug):
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
        "limit": tenant.plan.upload_size_limit_bytes, "uploads_open": tenant.status == Tenant.Status.ACTIVE})


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
def algorithms(request):
    return render(request, "builds/algorithms.html", {"algorithms": selectors.algorithms()})


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
