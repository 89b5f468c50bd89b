"""AWS Marketplace (SaaS): registration of buyers, and their subscription notifications.

Registration: Marketplace POSTs the buyer's browser to `/marketplace/register` with `x-amzn-marketplace-token`;
ResolveCustomer turns it into the buyer's account id and product code, recorded as a MarketplaceCustomer. The
buyer then names a company and contact, which becomes an access request staff complete by onboarding a tenant
(the same flow as the public form); onboarding links the customer to the tenant.

Notifications: Marketplace publishes subscription changes to SNS topics; an SQS queue subscribed to them is
polled by the scheduler. Each SNS message id is handled once (MarketplaceNotification), so a redelivered
message changes nothing. What they do to the tenant is recorded in its history (TenantEvent).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from tenants import services
from tenants.models import AccessRequest, MarketplaceCustomer, MarketplaceNotification, Plan, Tenant, TenantEvent

logger = logging.getLogger(__name__)

TOKEN_FIELD = "x-amzn-marketplace-token"
ACTIONS = ("subscribe-success", "subscribe-fail", "unsubscribe-pending", "unsubscribe-success",
           "entitlement-updated")


# ----- registration -----

def _resolve(token: str):
    from core.aws import gateways

    return gateways.platform_marketplace_metering().resolve_customer(token)


def marketplace_register(*, token: str, resolve: Callable | None = None) -> MarketplaceCustomer:
    """Resolve the token and record the customer (again: the same buyer registering twice is one row).

    Raises `MarketplaceTokenInvalid` when the token does not resolve, ValidationError when it is empty.
    """
    token = (token or "").strip()
    if not token:
        raise ValidationError("The request carries no Marketplace registration token.")
    resolved = (resolve or _resolve)(token)
    if not resolved.customer_aws_account_id:
        raise ValidationError("AWS Marketplace did not name the buyer's AWS account; try subscribing again.")
    customer, created = MarketplaceCustomer.objects.get_or_create(
        customer_aws_account_id=resolved.customer_aws_account_id, product_code=resolved.product_code,
        defaults=dict(customer_identifier=resolved.customer_identifier, license_arn=resolved.license_arn))
    if not created and (resolved.customer_identifier, resolved.license_arn) != (customer.customer_identifier,
                                                                                customer.license_arn):
        customer.customer_identifier, customer.license_arn = resolved.customer_identifier, resolved.license_arn
        customer.save(update_fields=["customer_identifier", "license_arn", "updated_at"])
    return customer


def marketplace_access_request(*, customer: MarketplaceCustomer, company: str, contact_email: str,
                               plan: Plan | None) -> AccessRequest:
    """The registered buyer's details become an access request for staff (once; a second form updates it)."""
    with transaction.atomic():
        customer = MarketplaceCustomer.objects.select_for_update().get(pk=customer.pk)
        request = customer.access_request
        if request is None:
            request = AccessRequest(company="", contact_email="")
        request.company, request.contact_email = company.strip(), contact_email.strip().lower()
        request.plan = plan
        request.message = (f"AWS Marketplace subscription: account {customer.customer_aws_account_id}, "
                           f"product {customer.product_code}")
        request.full_clean()
        request.save()
        if customer.access_request_id != request.pk:
            customer.access_request = request
            customer.save(update_fields=["access_request", "updated_at"])
    return request


def access_request_complete(*, request: AccessRequest, tenant: Tenant, actor=None) -> None:
    """Staff onboarded a tenant for this request: it is handled, and its Marketplace customer is the tenant's."""
    with transaction.atomic():
        marketplace_link_tenant(access_request=request, tenant=tenant, actor=actor)
        services.access_request_mark_handled(request=request)


def marketplace_link_tenant(*, access_request: AccessRequest, tenant: Tenant, actor=None) -> bool:
    """On onboarding from a Marketplace access request: the customer now belongs to the tenant."""
    customer = MarketplaceCustomer.objects.filter(access_request=access_request, tenant__isnull=True).first()
    if customer is None:
        return False
    customer.tenant = tenant
    customer.save(update_fields=["tenant", "updated_at"])
    TenantEvent.objects.create(tenant=tenant, action="marketplace_linked", actor=actor,
                               detail=f"AWS Marketplace account {customer.customer_aws_account_id}, "
                                      f"product {customer.product_code} ({customer.get_status_display()})")
    return True


# ----- subscription notifications -----

class NotMarketplaceMessage(ValueError):
    pass


def parse_notification(body: str) -> tuple[str, dict]:
    """(SNS message id, Marketplace message) from an SQS body holding an SNS envelope."""
    try:
        envelope = json.loads(body)
        message_id = envelope["MessageId"]
        message = json.loads(envelope["Message"])
        action = message["action"]
    except (ValueError, KeyError, TypeError) as exc:
        raise NotMarketplaceMessage(f"not an SNS envelope with a Marketplace message: {exc}") from None
    if action not in ACTIONS:
        raise NotMarketplaceMessage(f"unknown Marketplace action `{action}`")
    return str(message_id), message


def _customer_for(message: dict) -> MarketplaceCustomer | None:
    identifier = message.get("customer-identifier") or ""
    account = message.get("customer-aws-account-id") or message.get("CustomerAWSAccountId") or ""
    qs = MarketplaceCustomer.objects.select_related("tenant")
    if identifier:
        found = qs.filter(customer_identifier=identifier).first()
        if found:
            return found
    if account:
        qs = qs.filter(customer_aws_account_id=account)
        product = message.get("product-code")
        return (qs.filter(product_code=product) if product else qs).first()
    return None


def marketplace_notification_handle(*, message_id: str, message: dict) -> str:
    """Apply one notification once; returns what it did (also stored with the message id)."""
    if MarketplaceNotification.objects.filter(message_id=message_id).exists():
        return "already handled"
    action = message["action"]
    customer = _customer_for(message)
    who = message.get("customer-identifier") or message.get("customer-aws-account-id") or ""
    if customer is None:
        outcome = f"no registered Marketplace customer `{who}`: recorded only"
    else:
        outcome = _apply(action, customer)
    try:
        MarketplaceNotification.objects.create(message_id=message_id, action=action, customer=who,
                                               outcome=outcome)
    except IntegrityError:  # a concurrent poller handled the same message first
        return "already handled"
    return outcome


STATUS_AFTER = {
    "subscribe-success": MarketplaceCustomer.Status.SUBSCRIBED,
    "subscribe-fail": MarketplaceCustomer.Status.SUBSCRIBE_FAILED,
    "unsubscribe-pending": MarketplaceCustomer.Status.UNSUBSCRIBE_PENDING,
    "unsubscribe-success": MarketplaceCustomer.Status.UNSUBSCRIBED,
}


def _apply(action: str, customer: MarketplaceCustomer) -> str:
    if action in STATUS_AFTER:
        customer.status = STATUS_AFTER[action]
        customer.save(update_fields=["status", "updated_at"])
    tenant = customer.tenant
    if tenant is None:
        return f"{action}: customer has no tenant yet (status {customer.status})"
    tenant.refresh_from_db()
    detail = f"AWS Marketplace {action}"
    outcome = "recorded"
    if action == "subscribe-success" and tenant.status == Tenant.Status.SUSPENDED:
        services.tenant_resume(tenant=tenant)
        outcome = "tenant resumed"
    elif action == "subscribe-fail" and tenant.status == Tenant.Status.ACTIVE:
        services.tenant_suspend(tenant=tenant, reason="AWS Marketplace: the subscription failed")
        outcome = "tenant suspended"
    elif action == "unsubscribe-success" and tenant.status != Tenant.Status.OFFBOARDED:
        # The buyer left: access ends, the data stays (staff may delete it from the offboarding page).
        services.tenant_offboard(tenant=tenant, delete_data=False, confirm_slug=tenant.slug)
        outcome = "tenant offboarded (data retained)"
    elif action == "unsubscribe-pending":
        outcome = "recorded: the last usage is metered within the hour"
    elif action == "entitlement-updated":
        outcome = "recorded: entitlements changed in AWS Marketplace"
    TenantEvent.objects.create(tenant=tenant, action="marketplace_" + action.replace("-", "_"),
                               detail=f"{detail}: {outcome}")
    return outcome


def marketplace_message_handle(sqs, url: str, message) -> bool:
    """Handle one SQS message; deleted when handled (or not ours), kept for redelivery when it failed."""
    try:
        message_id, body = parse_notification(message.body)
    except NotMarketplaceMessage as exc:
        logger.warning("dropping Marketplace queue message %s: %s", message.message_id, exc)
        sqs.delete(url, message.receipt_handle)
        return False
    try:
        with transaction.atomic():
            outcome = marketplace_notification_handle(message_id=message_id, message=body)
    except Exception:  # noqa: BLE001 - AWS or the database failed: SQS delivers it again
        logger.exception("Marketplace notification %s failed; it will be delivered again", message_id)
        return False
    logger.info("Marketplace %s (%s): %s", body["action"], message_id, outcome)
    sqs.delete(url, message.receipt_handle)
    return True


def marketplace_poll_once(*, wait_seconds: int = 0) -> int:
    """One batch from the notification queue; 0 when Marketplace is off or the queue does not exist."""
    from core.aws import gateways
    from core.aws.errors import AwsError

    if not settings.MLAAS_MARKETPLACE_PRODUCT_CODE:
        return 0
    sqs = gateways.platform_sqs()
    try:
        url = sqs.queue_url(settings.MLAAS_MARKETPLACE_QUEUE_NAME)
        if url is None:
            logger.warning("Marketplace queue `%s` does not exist: run `manage.py platform_bootstrap`",
                           settings.MLAAS_MARKETPLACE_QUEUE_NAME)
            return 0
        messages = sqs.receive(url, wait_seconds=wait_seconds)
    except AwsError as exc:  # the scheduler's other work goes on; the messages wait in the queue
        logger.warning("could not read the Marketplace queue: %s", exc)
        return 0
    return sum(marketplace_message_handle(sqs, url, m) for m in messages)


def marketplace_queue_ensure(*, topic_arns: list[str]) -> str:
    """The notification queue, subscribed to Marketplace's SNS topics (idempotent); returns its URL."""
    from core.aws import gateways
    from tenants import naming

    sqs = gateways.platform_sqs()
    url, arn = sqs.ensure_queue(settings.MLAAS_MARKETPLACE_QUEUE_NAME, tags=naming.platform_tags())
    if topic_arns:
        sqs.allow_sns(url, arn, topic_arns)
        sns = gateways.platform_sns()
        for topic in topic_arns:
            sns.subscribe_queue(topic, arn)
    return url
