"""AWS Marketplace: registration through /marketplace/register (ResolveCustomer, Stubber: moto lacks it), staff
completing it like an access request, and subscription notifications through real SNS -> SQS (moto)."""

from __future__ import annotations

import json

import pytest
from botocore.stub import Stubber
from django.urls import reverse

from core.aws.marketplace import MarketplaceMeteringGateway
from tenants.models import AccessRequest, MarketplaceCustomer, MarketplaceNotification, Tenant, TenantEvent
from tests.web_support import text_of

ACCOUNT = "210987654321"
PRODUCT = "prod-mlaas-demo1"


@pytest.fixture
def metering_stub(monkeypatch):
    """ResolveCustomer scripted on the injected client of the gateway the registration view uses."""
    import botocore.session
    from botocore.config import Config

    from core.aws import gateways

    client = botocore.session.Session().create_client(
        "meteringmarketplace", region_name="us-east-1", aws_access_key_id="testing",
        aws_secret_access_key="testing", config=Config(retries={"mode": "standard", "max_attempts": 1}))
    monkeypatch.setattr(gateways, "platform_marketplace_metering", lambda: MarketplaceMeteringGateway(client))
    with Stubber(client) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def resolves(stub, token="tok-1", account=ACCOUNT, identifier=""):
    response = {"ProductCode": PRODUCT, "CustomerAWSAccountId": account}
    if identifier:
        response["CustomerIdentifier"] = identifier
    stub.add_response("resolve_customer", response, {"RegistrationToken": token})


def test_registration_becomes_an_access_request_that_staff_complete_by_onboarding(
        reference_data, metering_stub, client, staff_user):
    resolves(metering_stub)

    landed = client.post("/marketplace/register", {"x-amzn-marketplace-token": "tok-1"})
    customer = MarketplaceCustomer.objects.get()
    form_page = client.get(landed.url)
    sent = client.post(landed.url, {"company": "Umbrella Labs", "contact_email": "Ops@Umbrella.example",
                                    "plan": ""})

    assert (landed.status_code, landed.url) == (302, reverse("marketplace_details", args=[customer.code]))
    assert (customer.customer_aws_account_id, customer.product_code, customer.status) == (
        ACCOUNT, PRODUCT, "registered")
    assert form_page.status_code == 200 and f"AWS account {ACCOUNT}" in text_of(form_page)
    assert sent.status_code == 200 and "We received your registration" in text_of(sent)
    request = AccessRequest.objects.get()
    assert (request.company, request.contact_email, request.message) == (
        "Umbrella Labs", "ops@umbrella.example", f"AWS Marketplace subscription: account {ACCOUNT}, product {PRODUCT}")

    staff = client
    staff.force_login(staff_user)
    listing = text_of(staff.get(reverse("tenants:access_requests")))
    onboard_form = staff.get(reverse("tenants:onboard"), {"request": str(request.code)})
    onboarded = staff.post(reverse("tenants:onboard"), {
        "slug": "umbrella", "name": "Umbrella Labs", "plan": "standard", "isolation": "pool",
        "owner_email": "ops@umbrella.example", "access_request": str(request.code)})

    assert "Umbrella Labs AWS Marketplace · Registered" in listing
    assert onboard_form.context["form"].initial["access_request"] == request.code
    assert onboarded.status_code == 302
    tenant = Tenant.objects.get(slug="umbrella")
    customer.refresh_from_db()
    request.refresh_from_db()
    assert customer.tenant == tenant and request.handled_at is not None
    assert TenantEvent.objects.filter(tenant=tenant, action="marketplace_linked").get().detail == (
        f"AWS Marketplace account {ACCOUNT}, product {PRODUCT} (Registered)")
    again = client.get(reverse("marketplace_details", args=[customer.code]))
    assert "Already registered" in text_of(again)


@pytest.mark.parametrize(("error", "status", "sentence"), [
    ("InvalidTokenException", 400, "We could not confirm this subscription"),
    ("ExpiredTokenException", 400, "We could not confirm this subscription"),
    ("ThrottlingException", 503, "Please try again in a minute"),
])
def test_a_token_that_does_not_resolve_gets_a_clear_page(reference_data, metering_stub, client, error, status,
                                                         sentence):
    metering_stub.add_client_error("resolve_customer", error, "no", http_status_code=400 if status == 400 else 429,
                                   expected_params={"RegistrationToken": "bad"})

    response = client.post("/marketplace/register", {"x-amzn-marketplace-token": "bad"})

    assert response.status_code == status
    assert sentence in text_of(response)
    assert MarketplaceCustomer.objects.count() == 0


def test_register_without_a_token_explains_the_page(reference_data, client):
    assert client.get("/marketplace/register").status_code == 400
    response = client.post("/marketplace/register", {})
    assert response.status_code == 400 and "where AWS Marketplace sends new subscribers" in text_of(response)


def test_the_same_buyer_registering_twice_is_one_customer(reference_data, metering_stub, client):
    resolves(metering_stub, token="a")
    resolves(metering_stub, token="b", identifier="X01LEGACY")

    first = client.post("/marketplace/register", {"x-amzn-marketplace-token": "a"})
    second = client.post("/marketplace/register", {"x-amzn-marketplace-token": "b"})

    assert first.url == second.url
    assert list(MarketplaceCustomer.objects.values_list("customer_aws_account_id", "customer_identifier")) == [
        (ACCOUNT, "X01LEGACY")]


# ----- subscription notifications: SNS topic -> SQS queue -> the scheduler's poll -----

@pytest.fixture
def notifications(emulator, settings):
    """Marketplace on, its queue subscribed to a real (emulated) SNS topic; publish(action, customer) sends one."""
    import uuid

    from core.aws.clients import platform_client
    from tenants.marketplace import marketplace_queue_ensure

    settings.MLAAS_MARKETPLACE_PRODUCT_CODE = PRODUCT
    settings.MLAAS_MARKETPLACE_QUEUE_NAME = f"mp-{uuid.uuid4().hex[:8]}"
    sns = platform_client("sns")
    topic = sns.create_topic(Name=f"aws-mp-subscription-notification-{uuid.uuid4().hex[:6]}")["TopicArn"]
    url = marketplace_queue_ensure(topic_arns=[topic])

    def publish(action: str, identifier: str) -> None:
        sns.publish(TopicArn=topic, Message=json.dumps({
            "action": action, "customer-identifier": identifier, "product-code": PRODUCT}))

    publish.url = url
    return publish


def _poll_all() -> int:
    from tenants.marketplace import marketplace_poll_once

    total = 0
    for _ in range(3):
        total += marketplace_poll_once(wait_seconds=1)
    return total


def test_notifications_suspend_resume_and_offboard_the_tenant_once_each(make_tenant, notifications):
    tenant = make_tenant(isolation="pool", plan="basic")
    MarketplaceCustomer.objects.create(customer_aws_account_id=ACCOUNT, product_code=PRODUCT,
                                       customer_identifier="X01CUST", tenant=tenant)

    notifications("subscribe-fail", "X01CUST")
    assert _poll_all() == 1
    tenant.refresh_from_db()
    assert tenant.status == "suspended"

    notifications("subscribe-success", "X01CUST")
    notifications("entitlement-updated", "X01CUST")
    assert _poll_all() == 2
    tenant.refresh_from_db()
    assert tenant.status == "active"

    notifications("unsubscribe-pending", "X01CUST")
    notifications("unsubscribe-success", "X01CUST")
    assert _poll_all() == 2
    tenant.refresh_from_db()
    assert (tenant.status, tenant.offboard_data_choice) == ("offboarded", "retained")
    assert MarketplaceCustomer.objects.get().status == "unsubscribed"
    history = list(TenantEvent.objects.filter(tenant=tenant, action__startswith="marketplace_")
                   .order_by("at", "id").values_list("action", "detail"))
    assert history == [
        ("marketplace_subscribe_fail", "AWS Marketplace subscribe-fail: tenant suspended"),
        ("marketplace_subscribe_success", "AWS Marketplace subscribe-success: tenant resumed"),
        ("marketplace_entitlement_updated",
         "AWS Marketplace entitlement-updated: recorded: entitlements changed in AWS Marketplace"),
        ("marketplace_unsubscribe_pending",
         "AWS Marketplace unsubscribe-pending: recorded: the last usage is metered within the hour"),
        ("marketplace_unsubscribe_success", "AWS Marketplace unsubscribe-success: tenant offboarded (data retained)"),
    ]


def test_a_redelivered_notification_acts_once(make_tenant, notifications):
    from core.aws import gateways

    tenant = make_tenant(isolation="pool", plan="basic")
    MarketplaceCustomer.objects.create(customer_aws_account_id=ACCOUNT, product_code=PRODUCT,
                                       customer_identifier="X01CUST", tenant=tenant)
    envelope = json.dumps({"Type": "Notification", "MessageId": "sns-msg-1", "Message": json.dumps(
        {"action": "subscribe-fail", "customer-identifier": "X01CUST", "product-code": PRODUCT})})
    sqs = gateways.platform_sqs()
    sqs.send(notifications.url, envelope)
    sqs.send(notifications.url, envelope)  # SQS and SNS deliver at least once

    handled = _poll_all()

    assert handled == 2  # both deleted from the queue...
    assert TenantEvent.objects.filter(tenant=tenant, action="marketplace_subscribe_fail").count() == 1  # ...one acted
    assert list(MarketplaceNotification.objects.values_list("message_id", "outcome")) == [
        ("sns-msg-1", "tenant suspended")]


def test_a_notification_for_an_unknown_customer_or_garbage_is_recorded_or_dropped(reference_data, notifications):
    from core.aws import gateways

    notifications("subscribe-success", "X01NOBODY")
    gateways.platform_sqs().send(notifications.url, "not json")

    handled = _poll_all()

    assert handled == 1
    assert list(MarketplaceNotification.objects.values_list("action", "outcome")) == [
        ("subscribe-success", "no registered Marketplace customer `X01NOBODY`: recorded only")]
    assert gateways.platform_sqs().receive(notifications.url, wait_seconds=0) == []
