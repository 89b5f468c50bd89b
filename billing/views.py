from __future__ import annotations

from datetime import date, timedelta

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from billing import charts, exports, jobs, selectors, services
from billing.forms import DateRangeForm, InstancePriceForm, parse_month
from billing.models import InstancePrice
from tenants import access
from tenants.models import Plan

STATEMENTS_PAGE_SIZE = 25


@access.staff_required
def overview(request):
    today = services.utc_today()
    month = parse_month(request.GET.get("month"), today)
    data = selectors.overview_data(today=today, month=month)
    # Totals, plans and top tenants sum every statement; the table shows a page of them.
    statements_page = Paginator(data["statements"], STATEMENTS_PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(request, "billing/overview.html", {
        **data,
        "page_obj": statements_page, "query_without_page": query.urlencode() + "&" if query else "",
        "charts": [
            charts.daily_spend_by_tenant(days=data["days"], spend=data["spend"]),
            charts.revenue_vs_cost_by_plan(by_plan=data["by_plan"]),
            charts.top_tenants(statements=data["top_tenants"]),
            charts.overview_metered_vs_explorer(days=data["days"], spend=data["spend"], covered=data["covered"]),
        ],
        "sync_pending": jobs.cost_sync_pending(),
        "months": _recent_months(today),
    })


@access.staff_required
@require_POST
def sync(request):
    if jobs.cost_sync_enqueue(triggered_by=f"staff:{request.user.username}"):
        messages.success(request, "Cost Explorer sync queued; its result appears below when the worker ends it.")
    else:
        messages.warning(request, "No sync queued: one is already pending, or the queue is unreachable.")
    return redirect("billing:overview")


@login_required
def tenant(request, slug):
    found = access.get_tenant_for_user(request.user, slug)
    today = services.utc_today()
    month = parse_month(request.GET.get("month"), today)
    data = selectors.tenant_billing_data(tenant=found, today=today, month=month)
    return render(request, "billing/tenant.html", {
        **data,
        "tenant": found,
        "is_staff": request.user.is_staff,
        "charts": [
            charts.tenant_daily_spend(days=data["days"], metered=data["metered"], explorer=data["explorer"],
                                      covered=data["covered"]),
            charts.cost_per_build(build_costs=data["build_costs"]),
        ],
        "months": _recent_months(today),
    })


@login_required
def statement(request, slug):
    found = access.get_tenant_for_user(request.user, slug)
    today = services.utc_today()
    month = parse_month(request.GET.get("month"), today)
    return render(request, "billing/statement.html", {
        "tenant": found, "statement": selectors.statement_for_tenant(tenant=found, month=month),
        "is_staff": request.user.is_staff, "months": _recent_months(today)})


@login_required
def export_costs(request, slug):
    found = access.get_tenant_for_user(request.user, slug)
    form = DateRangeForm(request.GET)
    if not form.is_valid():
        return HttpResponseBadRequest(" ".join(form.errors.get("__all__", [])) or "Bad dates (YYYY-MM-DD).")
    start, end = form.range_or_default(services.utc_today())
    rows = selectors.cost_export_rows(start=start, end=end, tenant_slug=found.slug)
    return exports.csv_streaming_response(filename=f"costs-{found.slug}-{start}-{end}.csv",
                                          chunks=exports.cost_csv_chunks(rows))


@access.staff_required
def export_costs_all(request):
    form = DateRangeForm(request.GET)
    if not form.is_valid():
        return HttpResponseBadRequest(" ".join(form.errors.get("__all__", [])) or "Bad dates (YYYY-MM-DD).")
    start, end = form.range_or_default(services.utc_today())
    rows = selectors.cost_export_rows(start=start, end=end, include_untagged=True)
    return exports.csv_streaming_response(filename=f"costs-all-{start}-{end}.csv", chunks=exports.cost_csv_chunks(rows))


@login_required
def export_statement(request, slug):
    found = access.get_tenant_for_user(request.user, slug)
    month = parse_month(request.GET.get("month"), services.utc_today())
    staff = request.user.is_staff
    header = exports.STATEMENT_COLUMNS + (exports.STATEMENT_STAFF_COLUMNS if staff else [])
    return exports.csv_response(
        filename=f"statement-{found.slug}-{month:%Y-%m}.csv", header=header,
        rows=exports.statement_rows([selectors.statement_for_tenant(tenant=found, month=month)], staff=staff))


@access.staff_required
def export_statements_all(request):
    month = parse_month(request.GET.get("month"), services.utc_today())
    return exports.csv_response(
        filename=f"statements-{month:%Y-%m}.csv", header=exports.STATEMENT_COLUMNS + exports.STATEMENT_STAFF_COLUMNS,
        rows=exports.statement_rows(selectors.statements_for_month(month=month), staff=True))


@access.staff_required
def prices(request):
    if request.method == "POST":
        form = InstancePriceForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            try:
                price = services.instance_price_set(instance_type=data["instance_type"], region=data["region"],
                                                    price_per_hour=data["price_per_hour"], add_new=data["add_new"])
            except services.UnknownInstanceType as exc:
                form.add_error("instance_type", str(exc))
            except services.InvalidPrice as exc:
                form.add_error("price_per_hour", str(exc))
            else:
                messages.success(request, f"{price.instance_type} in {price.region}: ${price.price_per_hour}/h; "
                                          "it applies to steps metered from now on.")
                return redirect("billing:prices")
    else:
        form = InstancePriceForm(initial={key: request.GET[key] for key in ("instance_type", "region")
                                          if request.GET.get(key)})
        if request.GET.get("instance_type"):
            price = InstancePrice.objects.filter(instance_type=request.GET["instance_type"],
                                                 region=request.GET.get("region", "")).first()
            if price is not None:
                form.initial["price_per_hour"] = price.price_per_hour
    price_list = list(InstancePrice.objects.all())
    priced = {(p.instance_type, p.region) for p in price_list}
    plan_types = sorted({t for pair in Plan.objects.values_list("processing_instance_type", "training_instance_type")
                         for t in pair if t})
    return render(request, "billing/prices.html", {
        "prices": price_list, "form": form,
        "unpriced_plan_types": [t for t in plan_types if (t, settings.AWS_REGION) not in priced]})


def _recent_months(today: date, count: int = 12) -> list[date]:
    months, month = [], today.replace(day=1)
    for _ in range(count):
        months.append(month)
        month = (month - timedelta(days=1)).replace(day=1)
    return months


@access.staff_required
def setup(request):
    """Billing setup: shows the last check; the buttons run a check (and activation), which calls Cost Explorer."""
    from billing.setup import billing_setup_check, billing_setup_items

    if request.method == "POST":
        activate = request.POST.get("action") == "activate"
        check = billing_setup_check(activate=activate)
        if check.activated:
            messages.success(request, f"Activated {', '.join(check.activated)} as cost allocation tags.")
        elif check.cost_explorer_error:
            messages.error(request, f"Cost Explorer: {check.cost_explorer_error}")
        else:
            messages.success(request, "Checked.")
        return redirect("billing:setup")
    check = selectors.billing_setup_last_check()
    return render(request, "billing/setup.html", {"check": check, "items": billing_setup_items(check)})


@access.staff_required
def marketplace(request):
    return render(request, "billing/marketplace.html", selectors.marketplace_overview())
