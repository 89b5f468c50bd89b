from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from builds import selectors, services
from builds.forms import BuildFilterForm, StartBuildForm
from builds.models import Algorithm, Build, ModelVersion, RejectedUpload
from mlaas_portal import access
from mlaas_portal.aws.errors import AwsError
from tenants.models import Tenant


@login_required
def build_list(request):
    form = BuildFilterForm(request.GET or None)
    if not request.user.is_staff:
        form.fields["tenant"].queryset = access.tenants_for_user(request.user)
    filters = form.cleaned_data if form.is_valid() else {}
    qs = selectors.build_list(
        base=access.builds_for_user(request.user),
        tenant=filters.get("tenant").slug if filters.get("tenant") else "",
        plan=filters.get("plan").slug if filters.get("plan") else "",
        status=filters.get("status", ""), algorithm=filters.get("algorithm").slug if filters.get("algorithm") else "",
        date_from=filters.get("date_from"), date_to=filters.get("date_to"), sort=filters.get("sort") or "-created")
    page = Paginator(qs, 25).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    template = "builds/_rows.html" if request.htmx else "builds/list.html"
    return render(request, template, {"form": form, "page_obj": page,
                                      "query_without_page": query.urlencode() + "&" if query else "",
                                      "tenant": access.user_tenant(request.user)})


def _detail_context(request, build):
    from billing.selectors import build_cost

    version = ModelVersion.objects.filter(build=build).first()
    return {"build": build, "steps": build.steps.all(), "transitions": build.transitions.all(),
            "version": version, "cost": build_cost(build),
            "can_decide": version is not None and access.is_tenant_owner(request.user, build.tenant),
            "live": build.status not in Build.FINISHED}


@login_required
def build_detail(request, code):
    build = access.get_build_for_user(request.user, code)
    template = "builds/_detail_body.html" if request.htmx else "builds/detail.html"
    return render(request, template, _detail_context(request, build))


@login_required
@require_POST
def build_cancel(request, code):
    build = access.get_build_for_user(request.user, code)
    try:
        services.build_cancel(build=build, actor=request.user)
        messages.success(request, "Cancel requested.")
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    return redirect("builds:detail", code=build.code)


@login_required
@require_POST
def build_retry(request, code):
    build = access.get_build_for_user(request.user, code)
    try:
        new = services.build_retry(build=build, actor=request.user)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect("builds:detail", code=build.code)
    messages.success(request, "A new build was queued with the same dataset and settings.")
    return redirect("builds:detail", code=new.code)


@login_required
def upload(request, slug):
    tenant = access.get_tenant_for_user(request.user, slug)
    from mlaas_portal.aws import gateways

    datasets = []
    if tenant.status == Tenant.Status.ACTIVE:
        try:
            datasets = sorted(gateways.platform_s3().list_keys(tenant.bucket, tenant.upload_prefix),
                              key=lambda o: o["LastModified"], reverse=True)[:100]
        except AwsError:
            messages.warning(request, "The dataset list is unavailable right now.")
    start_form = StartBuildForm(request.POST or None)
    if request.method == "POST" and start_form.is_valid():
        data = start_form.cleaned_data
        try:
            build, _ = services.build_create(
                tenant=tenant, dataset_key=data["dataset_key"],
                algorithm_slug=data["algorithm"].slug if data["algorithm"] else None, target=data["target"],
                source=Build.Source.PORTAL, created_by=request.user)
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
        else:
            return redirect("builds:detail", code=build.code)
    return render(request, "builds/upload.html", {
        "tenant": tenant, "algorithms": Algorithm.objects.filter(active=True), "datasets": datasets,
        "rejected": RejectedUpload.objects.filter(tenant=tenant)[:10], "start_form": start_form,
        "limit": tenant.plan.upload_size_limit_bytes})


@login_required
def models(request, slug):
    tenant = access.get_tenant_for_user(request.user, slug)
    versions = ModelVersion.objects.filter(tenant=tenant).select_related("build", "build__algorithm", "decided_by")
    return render(request, "builds/models.html", {"tenant": tenant, "versions": versions,
                                                  "can_decide": access.is_tenant_owner(request.user, tenant)})


@login_required
@require_POST
def model_decide(request, slug, version):
    found = access.get_model_version_for_user(request.user, slug, version)
    if not access.is_tenant_owner(request.user, found.tenant):
        raise Http404
    approve = request.POST.get("decision") == "approve"
    try:
        services.model_version_decide(version=found, approve=approve, actor=request.user)
        messages.success(request, f"Model version {found.version} {'approved' if approve else 'rejected'}.")
    except AwsError as exc:
        messages.error(request, f"The model registry refused the change: {exc}")
    return redirect(request.POST.get("next") or "builds:models", slug=slug) if not request.POST.get("next") \
        else redirect(request.POST["next"])


@login_required
def model_download(request, slug, version):
    """Redirect to a short-lived link limited to that one artifact, signed by the tenant's role."""
    from mlaas_portal.aws import gateways
    from tenants.credentials import tenant_assume

    found = access.get_model_version_for_user(request.user, slug, version)
    tenant = found.tenant
    creds = tenant_assume(tenant, purpose="download", duration=900)
    url = gateways.tenant_s3(creds).presigned_get(tenant.bucket, found.artifact_key, expires=300,
                                                 filename=f"{tenant.slug}-model-v{found.version}.tar.gz")
    return redirect(url)


@access.staff_required
def algorithms(request):
    return render(request, "builds/algorithms.html", {"algorithms": Algorithm.objects.all()})


@login_required
@require_POST
def presign(request, slug):
    """Session-authenticated twin of POST /api/v1/tenants/{slug}/uploads for the upload page."""
    from django.http import JsonResponse

    from builds.uploads import upload_presign

    tenant = access.get_tenant_for_user(request.user, slug)
    try:
        size = int(request.POST.get("size", "0"))
    except ValueError:
        size = 0
    try:
        post = upload_presign(tenant=tenant, filename=request.POST.get("filename", ""), size=size,
                              algorithm=request.POST.get("algorithm", ""), target=request.POST.get("target", ""))
    except ValidationError as exc:
        return JsonResponse({"code": "invalid", "message": " ".join(exc.messages)}, status=400)
    except AwsError:
        return JsonResponse({"code": "aws_unavailable", "message": "Storage is unavailable; try again."}, status=503)
    return JsonResponse(post)
