"""Billing setup: are the tenant and plan tag keys active cost allocation tags, can we read Cost Explorer,
when did it last sync, which AWS Marketplace product is this, each with what to do when it is not ready.

Checking calls Cost Explorer (ListCostAllocationTags), so only a staff action or `manage.py billing_setup`
runs it; the page shows the last check stored (BillingSetupCheck).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from billing.models import BillingSetupCheck, CostSyncRun


@dataclass(frozen=True)
class SetupItem:
    name: str
    ready: bool
    state: str  # what we found
    todo: str  # what to do when not ready ("" when ready)


def tag_keys() -> list[str]:
    return [settings.MLAAS_TAG_KEY, settings.MLAAS_PLAN_TAG_KEY]


def billing_setup_check(*, activate: bool = False, gateway=None) -> BillingSetupCheck:
    """Ask Cost Explorer for the tag keys' status (activating the inactive ones when asked) and store it."""
    from core.aws.errors import AwsError

    if gateway is None:
        from core.aws import gateways

        gateway = gateways.platform_cost_explorer()
    check = BillingSetupCheck(tag_statuses={key: "unknown" for key in tag_keys()})
    try:
        statuses = gateway.cost_allocation_tag_statuses(tag_keys())
        if activate:
            inactive = [key for key, status in statuses.items() if status == "Inactive"]
            refused = gateway.activate_cost_allocation_tags(inactive) if inactive else {}
            check.activated = [key for key in inactive if key not in refused]
            statuses.update({key: "Active" for key in check.activated})
            if refused:
                check.cost_explorer_error = "; ".join(f"{k}: {v}" for k, v in refused.items())
        check.tag_statuses = statuses
    except AwsError as exc:
        check.cost_explorer_error = str(exc)[:2000]
    check.save()
    return check


def billing_setup_items(check: BillingSetupCheck | None) -> list[SetupItem]:
    """The page's and the command's rows, from the last check and the tables (no AWS call)."""
    items = []
    if check is None:
        items.append(SetupItem("Cost allocation tags", False, "never checked",
                               "Run the check (button below or `manage.py billing_setup`)."))
    else:
        for key, status in check.tag_statuses.items():
            todo = {"Active": "",
                    "Inactive": "Activate it (`manage.py billing_setup --activate` or the button below); Cost "
                                "Explorer groups costs by it from then on, not retroactively.",
                    "missing": "AWS has not seen this key on a resource with cost yet (up to 24 h after the first "
                               "tagged build); check again later, then activate it."}.get(
                status, "Cost Explorer could not be asked: see Cost Explorer access.")
            items.append(SetupItem(f"Tag key {key}", status == "Active", status, todo))
        items.append(SetupItem(
            "Cost Explorer access", not check.cost_explorer_error,
            "answered" if not check.cost_explorer_error else check.cost_explorer_error,
            "" if not check.cost_explorer_error else
            "Enable Cost Explorer in the management account's Billing console and allow the portal's role "
            "ce:GetCostAndUsage, ce:ListCostAllocationTags and ce:UpdateCostAllocationTagsStatus."))
    last = CostSyncRun.objects.order_by("-started_at").first()
    items.append(SetupItem(
        "Last Cost Explorer sync", bool(last and last.status == CostSyncRun.Status.SUCCEEDED),
        f"{last.status} at {last.started_at:%Y-%m-%d %H:%M} UTC" if last else "never",
        "" if last and last.status == CostSyncRun.Status.SUCCEEDED else
        "The scheduler syncs daily (`manage.py run_scheduler`); staff can start one from the billing page."
        + (f" Last error: {last.error}" if last and last.error else "")))
    product = settings.MLAAS_MARKETPLACE_PRODUCT_CODE
    items.append(SetupItem(
        "AWS Marketplace product", bool(product), product or "not configured",
        "" if product else "Set MLAAS_MARKETPLACE_PRODUCT_CODE (and MLAAS_MARKETPLACE_TOPIC_ARNS for the SNS "
                           "topics), then run `manage.py platform_bootstrap`; give Marketplace the registration "
                           "URL https://<portal>/marketplace/register."))
    return items
