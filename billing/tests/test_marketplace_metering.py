"""AWS Marketplace metering: hourly records of whole overage build hours, BatchMeterUsage 25 a call, results
stored, throttling retried, records too old to send expire visibly. moto answers every customer
CustomerNotSubscribed (nothing can subscribe one there); Success, DuplicateRecord and throttling are scripted
with Stubber."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from botocore.stub import ANY, Stubber

from billing.marketplace import marketplace_metering_run, marketplace_usage_record, marketplace_usage_send
from billing.models import MarketplaceUsageRecord
from core.aws.marketplace import MarketplaceMeteringGateway
from tenants.models import MarketplaceCustomer

PRODUCT = "prod-mlaas-demo1"
DIMENSION = "build_hours_over_included"
DAY2 = datetime(2026, 3, 2, tzinfo=UTC)


def at(hour: int, minute: int = 0) -> datetime:
    return DAY2 + timedelta(hours=hour, minutes=minute)


@pytest.fixture
def customer(tenant_factory):
    def make(identifier: str = "X01CUST", account: str = "210987654321", status: str = "subscribed"):
        tenant = tenant_factory(plan="basic")  # 10 build hours included
        return MarketplaceCustomer.objects.create(customer_aws_account_id=account, product_code=PRODUCT,
                                                  customer_identifier=identifier, tenant=tenant, status=status)
    return make


def used(build_factory, tenant, *, hours: float, ended: datetime) -> None:
    build = build_factory(tenant, steps=[("train", "ml.m5.large", 1, ended - timedelta(minutes=5), ended)])
    build.steps.update(billable_seconds=int(hours * 3600))


def quantities() -> list[tuple[datetime, int, str]]:
    return list(MarketplaceUsageRecord.objects.order_by("hour").values_list("hour", "quantity", "status"))


def test_each_completed_hour_gets_one_record_of_the_whole_overage_hours_it_added(customer, build_factory):
    c = customer()
    used(build_factory, c.tenant, hours=10.5, ended=at(10, 15))
    used(build_factory, c.tenant, hours=1.0, ended=at(11, 20))

    first = marketplace_usage_record(now=at(12, 30))  # the last completed hour only: 11:00
    again = marketplace_usage_record(now=at(12, 59))
    used(build_factory, c.tenant, hours=1.0, ended=at(13, 10))
    later = marketplace_usage_record(now=at(14, 5))

    assert (first, again, later) == (1, 0, 2)
    # 11.5 h by 12:00 -> 1 whole hour over 10; nothing new by 13:00; 12.5 h by 14:00 -> 2, one already sent.
    assert quantities() == [(at(11), 1, "pending"), (at(12), 0, "pending"), (at(13), 1, "pending")]


def test_unsubscribed_or_unlinked_customers_and_plans_without_a_dimension_are_not_metered(customer, build_factory):
    from tenants.models import Plan

    customer(identifier="A", account="111111111111", status="unsubscribed")
    customer(identifier="B", account="222222222222", status="registered")
    c = customer(identifier="C", account="333333333333")
    Plan.objects.filter(pk=c.tenant.plan_id).update(marketplace_dimension="")

    assert marketplace_usage_record(now=at(12, 30)) == 0


def test_sending_through_moto_stores_its_result_per_record(customer, emulator):
    customer()
    now = datetime.now(UTC)
    marketplace_usage_record(now=now)

    counts = marketplace_usage_send(now=now)

    record = MarketplaceUsageRecord.objects.get()
    assert counts == {"expired": 0, "CustomerNotSubscribed": 1, "calls": 1}
    assert (record.status, record.result, record.attempts, bool(record.metering_record_id)) == (
        "sent", "CustomerNotSubscribed", 1, True)


@pytest.fixture
def stub():
    import botocore.session
    from botocore.config import Config

    client = botocore.session.Session().create_client(
        "meteringmarketplace", region_name="us-east-1", aws_access_key_id="testing",
        aws_secret_access_key="testing", config=Config(retries={"mode": "standard", "max_attempts": 1}))
    with Stubber(client) as stubber:
        stubber.gateway = MarketplaceMeteringGateway(client)
        yield stubber
        stubber.assert_no_pending_responses()


def _results(records, statuses):
    return {"Results": [{"UsageRecord": {"Timestamp": r.hour, "CustomerIdentifier": r.customer.customer_identifier,
                                         "Dimension": r.dimension, "Quantity": r.quantity},
                         "MeteringRecordId": f"mr-{r.pk}", "Status": s} for r, s in zip(records, statuses,
                                                                                        strict=True)],
            "UnprocessedRecords": []}


def test_thirty_customers_go_out_in_two_calls_of_at_most_25(customer, stub):
    for n in range(30):
        customer(identifier=f"X{n:02d}", account=f"{n:012d}")
    now = at(12, 30)
    marketplace_usage_record(now=now)
    records = list(MarketplaceUsageRecord.objects.select_related("customer").order_by("product_code", "hour", "id"))
    for batch in (records[:25], records[25:]):
        stub.add_response("batch_meter_usage", _results(batch, ["Success"] * len(batch)),
                          {"ProductCode": PRODUCT, "UsageRecords": ANY})

    counts = marketplace_usage_send(now=now, gateway=stub.gateway)

    assert counts == {"expired": 0, "Success": 30, "calls": 2}
    assert set(MarketplaceUsageRecord.objects.values_list("status", "result")) == {("sent", "Success")}
    assert MarketplaceUsageRecord.objects.get(pk=records[0].pk).metering_record_id == f"mr-{records[0].pk}"


def test_throttling_is_retried_with_backoff_then_duplicates_are_stored(customer, stub):
    customer()
    now = at(12, 30)
    marketplace_usage_record(now=now)
    records = list(MarketplaceUsageRecord.objects.select_related("customer"))
    stub.add_client_error("batch_meter_usage", "ThrottlingException", "slow down", http_status_code=400)
    stub.add_client_error("batch_meter_usage", "ThrottlingException", "slow down", http_status_code=400)
    stub.add_response("batch_meter_usage", _results(records, ["DuplicateRecord"]))
    slept = []

    counts = marketplace_usage_send(now=now, gateway=stub.gateway, sleep=slept.append)

    assert (counts, slept) == ({"expired": 0, "DuplicateRecord": 1, "calls": 1}, [1, 2])
    assert MarketplaceUsageRecord.objects.values_list("status", "result").get() == ("sent", "DuplicateRecord")


def test_a_record_never_sent_within_six_hours_expires_and_alerts_staff(customer, stub, staff_user, client):
    from django.urls import reverse

    customer()
    marketplace_usage_record(now=at(12, 30))
    for _ in range(4):
        stub.add_client_error("batch_meter_usage", "ThrottlingException", "slow down", http_status_code=400)

    failed = marketplace_usage_send(now=at(12, 31), gateway=stub.gateway, sleep=lambda s: None)
    pending = MarketplaceUsageRecord.objects.get()
    later = marketplace_usage_send(now=at(17, 1), gateway=stub.gateway, sleep=lambda s: None)  # 11:00 + 6 h passed

    assert failed == {"expired": 0, "failed": 1, "calls": 1}
    assert (pending.status, pending.attempts) == ("pending", 1)
    assert "ThrottlingException" in pending.last_error
    assert later == {"expired": 1}
    record = MarketplaceUsageRecord.objects.get()
    assert (record.status, record.last_error) == (
        "expired", "not sent within six hours of its hour: AWS Marketplace no longer accepts it")
    client.force_login(staff_user)
    dashboard = client.get(reverse("home")).content.decode()
    page = client.get(reverse("billing:marketplace")).content.decode()
    assert 'id="marketplace-expired-alert"' in dashboard and "1 AWS Marketplace usage record could" in dashboard
    assert 'id="marketplace-expired"' in page and "expired" in page


def test_hours_missed_during_a_long_outage_are_recorded_as_expired_not_skipped(customer, stub):
    customer()
    marketplace_usage_record(now=at(2, 30))  # records 01:00
    MarketplaceUsageRecord.objects.update(status="sent", result="Success")

    created = marketplace_usage_record(now=at(12, 30))  # 02:00 ... 11:00

    assert created == 10
    statuses = [s for _, _, s in quantities()][1:]
    assert statuses == ["expired"] * 5 + ["pending"] * 5  # 02:00-06:00 are over six hours old at 12:30


def test_metering_run_records_and_sends(customer, stub):
    customer()
    stub.add_response("batch_meter_usage", {"Results": [], "UnprocessedRecords": [
        {"Timestamp": at(11), "CustomerIdentifier": "X01CUST", "Dimension": DIMENSION, "Quantity": 0}]})

    counts = marketplace_metering_run(now=at(12, 30), gateway=stub.gateway)

    assert counts == {"recorded": 1, "expired": 0, "unprocessed": 1, "calls": 1}
    assert MarketplaceUsageRecord.objects.values_list("status", "last_error").get() == (
        "pending", "AWS did not process the record in this call; it is sent again")


def test_staff_only_marketplace_page(reference_data, client, django_user_model):
    from django.urls import reverse

    user = django_user_model.objects.create_user(username="someone", password="pw")
    client.force_login(user)
    assert client.get(reverse("billing:marketplace")).status_code in (302, 403, 404)
