"""Build pages: list (filters, sort, pages, live fragment), detail (timeline, live polling, actions), upload,
models; and the ownership rule: another tenant's user gets 404 on every page that takes an id."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.urls import reverse

from builds.models import Build, ModelVersion, RejectedUpload
from tests.web_support import T0, client_for, create_build, create_member, create_tenant, page_title, text_of


@pytest.fixture
def acme(reference_data):
    return create_tenant(slug="acme", name="Acme Corp", plan="basic")


@pytest.fixture
def globex(reference_data):
    return create_tenant(slug="globex", name="Globex", plan="premium")


def codes(response) -> list[str]:
    return [str(b.code) for b in response.context["builds"]]


# ----- list -----

def test_build_list_for_member_shows_only_its_builds_newest_first(acme, globex):
    old = create_build(acme, created_at=T0)
    new = create_build(acme, created_at=T0 + timedelta(hours=1))
    create_build(globex)

    response = client_for(create_member(acme)).get(reverse("builds:list"))

    assert response.status_code == 200
    assert codes(response) == [str(new.code), str(old.code)]
    assert page_title(response) == "Builds · MLaaS Portal"
    assert reverse("builds:detail", args=[new.code]) in response.content.decode()
    assert "globex" not in response.content.decode()


def test_build_list_filters_by_tenant_plan_status_algorithm_and_date(acme, globex, staff_user):
    a1 = create_build(acme, status="failed", failure_reason="column `label` not found", created_at=T0)
    a2 = create_build(acme, status="succeeded", algorithm="random-forest-classifier", created_at=T0 + timedelta(days=2))
    g1 = create_build(globex, status="running", created_at=T0 + timedelta(days=1))
    client = client_for(staff_user)

    def listed(**query) -> list[str]:
        return codes(client.get(reverse("builds:list"), query))

    assert listed(tenant="acme") == [str(a2.code), str(a1.code)]
    assert listed(plan="premium") == [str(g1.code)]
    assert listed(status="failed") == [str(a1.code)]
    assert listed(algorithm="random-forest-classifier") == [str(a2.code)]
    assert listed(date_from="2026-03-03", date_to="2026-03-03") == [str(g1.code)]
    assert listed(date_from="2026-03-03") == [str(a2.code), str(g1.code)]
    assert listed(tenant="acme", status="succeeded") == [str(a2.code)]


def test_build_list_sorts_by_column_both_ways(acme, globex, staff_user):
    fast = create_build(globex, duration=timedelta(seconds=30), created_at=T0)
    slow = create_build(acme, duration=timedelta(minutes=9), created_at=T0 + timedelta(hours=1))
    waiting = create_build(acme, status="queued", created_at=T0 + timedelta(hours=2))
    client = client_for(staff_user)

    def listed(sort) -> list[str]:
        return codes(client.get(reverse("builds:list"), {"sort": sort}))

    assert listed("created") == [str(fast.code), str(slow.code), str(waiting.code)]
    assert listed("-created") == [str(waiting.code), str(slow.code), str(fast.code)]
    assert listed("-duration") == [str(slow.code), str(fast.code), str(waiting.code)]
    assert listed("duration") == [str(fast.code), str(slow.code), str(waiting.code)]
    assert listed("tenant")[-1] == str(fast.code)
    headers = client.get(reverse("builds:list"), {"sort": "duration"}).context["sort_headers"]
    assert (headers["duration"]["href"], headers["duration"]["arrow"]) == ("?sort=-duration", "↑")
    assert headers["created"]["href"] == "?sort=-created"


def test_build_list_paginates_and_keeps_filters_in_page_links(acme):
    for n in range(27):
        create_build(acme, status="succeeded", created_at=T0 + timedelta(minutes=n))
    client = client_for(create_member(acme))

    first = client.get(reverse("builds:list"), {"status": "succeeded"})
    next_link = first.context["keyset"].next_cursor
    second = client.get(reverse("builds:list"), {"status": "succeeded", "after": next_link})

    assert (len(codes(first)), len(codes(second))) == (25, 2)
    assert set(codes(first)).isdisjoint(codes(second))
    assert f'href="?status=succeeded&amp;after={next_link}" rel="next"' in first.content.decode()
    assert 'href="?status=succeeded&amp;page=last" aria-label="Last page"' in first.content.decode()
    assert 'rel="prev"' not in first.content.decode()
    back = client.get(reverse("builds:list"), {"status": "succeeded",
                                               "before": second.context["keyset"].previous_cursor})
    assert codes(back) == codes(first)


def test_build_list_bad_page_link_is_a_clear_400(acme):
    response = client_for(create_member(acme)).get(reverse("builds:list"), {"after": "not-a-cursor"})

    assert response.status_code == 400
    assert "This page link is not valid" in response.content.decode()


def test_build_list_htmx_refresh_returns_only_the_rows(acme):
    build = create_build(acme, status="running")

    response = client_for(create_member(acme)).get(reverse("builds:list"), {"status": "running"},
                                                   HTTP_HX_REQUEST="true")

    html = response.content.decode()
    assert (response.status_code, "<html" in html, 'id="build-table"' in html) == (200, False, True)
    assert [t.name for t in response.templates][:1] == ["builds/_rows.html"]
    assert f'id="build-{build.code}"' in html


def test_build_list_page_polls_its_rows(acme):
    html = client_for(create_member(acme)).get(reverse("builds:list"), {"status": "queued"}).content.decode()

    assert 'id="build-rows" hx-get="/builds/?status=queued" hx-trigger="every 5s"' in html


def test_build_list_empty_states(acme, staff_user):
    tenant_page = client_for(create_member(acme)).get(reverse("builds:list"))
    staff_page = client_for(staff_user).get(reverse("builds:list"))
    create_build(acme, status="succeeded")
    filtered = client_for(staff_user).get(reverse("builds:list"), {"status": "failed"})

    assert "No builds yet: upload a CSV to start one." in text_of(tenant_page)
    assert reverse("builds:upload", args=["acme"]) in tenant_page.content.decode()
    assert "No builds yet: builds appear here when tenants upload data." in text_of(staff_page)
    assert "No builds match these filters. Clear the filters." in text_of(filtered)


def test_build_list_invalid_filter_shows_the_error_next_to_the_field(acme, staff_user):
    build = create_build(acme)

    response = client_for(staff_user).get(reverse("builds:list"), {"date_from": "2026-03-05",
                                                                  "date_to": "2026-03-01", "status": "nope"})

    html = response.content.decode()
    assert response.status_code == 200
    assert response.context["form"].errors == {
        "status": ["Select a valid choice. nope is not one of the available choices."],
        "date_to": ["The end date is before the start date."]}
    assert '<ul class="errorlist" id="id_date_to_error"><li>The end date is before the start date.</li></ul>' in html
    assert codes(response) == []  # date_from still applies
    assert str(build.code) not in html


def test_member_cannot_filter_the_list_to_another_tenant(acme, globex):
    create_build(globex)

    response = client_for(create_member(acme)).get(reverse("builds:list"), {"tenant": "globex"})

    assert codes(response) == []
    assert "tenant" in response.context["form"].errors


# ----- detail -----

def test_build_detail_shows_timeline_metrics_report_version_and_cost(acme):
    build = create_build(acme, status="succeeded", metrics={"accuracy": 0.9649, "f1": 0.9722}, version=True,
                      data_report={"rows_in": 569, "rows_out": 569, "dropped": {"duplicates": 0},
                                   "features": {"numeric": 30, "categorical": 0, "ignored": 0},
                                   "splits": {"train": 398, "validation": 85, "test": 86}})
    owner = create_member(acme, role="owner")

    response = client_for(owner).get(reverse("builds:detail", args=[build.code]))

    text = text_of(response)
    assert response.status_code == 200
    assert page_title(response) == f"Build {str(build.code)[:8]} · acme · MLaaS Portal"
    assert [(s.name, s.status) for s in response.context["steps"]] == [
        ("preprocess", "succeeded"), ("train", "succeeded"), ("evaluate", "succeeded"), ("condition", "succeeded"),
        ("register", "succeeded")]
    assert response.context["progress"]["done"] == 5
    assert "0.965 Accuracy" in text and "0.972 F1" in text
    assert "Rows read 569" in text and "398 train · 85 validation · 86 test" in text
    assert "Model version 1 Pending approval" in text
    assert 'id="approve-model"' in response.content.decode() and 'id="reject-model"' in response.content.decode()
    assert "preprocess log line" in response.content.decode()
    assert 'hx-trigger="every 2s"' not in response.content.decode()  # finished: no polling


def test_running_build_polls_every_two_seconds_and_stops_when_finished(acme):
    build = create_build(acme, status="running", steps=2)
    client = client_for(create_member(acme))

    page = client.get(reverse("builds:detail", args=[build.code]))
    fragment = client.get(reverse("builds:detail", args=[build.code]), HTTP_HX_REQUEST="true")
    Build.objects.filter(pk=build.pk).update(status="succeeded", ended_at=build.started_at + timedelta(minutes=2))
    final = client.get(reverse("builds:detail", args=[build.code]), HTTP_HX_REQUEST="true")

    poller = (f'<div id="build-body" hx-get="{reverse("builds:detail", args=[build.code])}" '
              'hx-trigger="every 2s" hx-swap="outerHTML" data-live="1">')
    assert poller in page.content.decode()
    assert fragment.content.decode().startswith(poller)  # the fragment replaces itself, poller included
    assert "<html" not in fragment.content.decode()
    assert [(s.name, s.status) for s in fragment.context["steps"]] == [
        ("preprocess", "succeeded"), ("train", "running"), ("evaluate", "pending"), ("condition", "pending"),
        ("register", "pending")]
    assert "running for" in text_of(fragment) and 'id="cancel-build"' in fragment.content.decode()
    assert final.content.decode().startswith('<div id="build-body" >')  # no hx-trigger: polling stops
    assert 'id="cancel-build"' not in final.content.decode()


def test_running_build_shows_cost_so_far(acme):
    from django.utils import timezone

    build = create_build(acme, status="running", steps=2, created_at=timezone.now() - timedelta(hours=1))

    response = client_for(create_member(acme)).get(reverse("builds:detail", args=[build.code]))

    assert response.context["cost"] > 0
    assert "cost so far" in text_of(response)


def test_failed_build_shows_its_reason_and_retry(make_tenant):
    from core.aws import gateways

    acme = make_tenant(isolation="silo", plan="basic")
    build = create_build(acme, status="failed", steps=1, failure_reason="column `label` not found; columns are: `a`")
    gateways.platform_s3().client.put_object(Bucket=acme.bucket, Key=build.dataset_key, Body=b"a\n1\n")
    client = client_for(create_member(acme))

    page = client.get(reverse("builds:detail", args=[build.code]))
    retried = client.post(reverse("builds:retry", args=[build.code]))

    new = Build.objects.exclude(pk=build.pk).get()
    assert "Why it failed: column `label` not found; columns are: `a`" in text_of(page)
    assert [(s.name, s.status) for s in page.context["steps"]][:2] == [("preprocess", "failed"),
                                                                       ("train", "skipped")]
    assert (retried.status_code, retried.url) == (302, reverse("builds:detail", args=[new.code]))
    assert (new.status, new.source, new.dataset_key) == ("queued", "retry", build.dataset_key)


def test_retry_of_a_build_whose_dataset_version_is_gone_says_so(make_tenant):
    from core.aws import gateways

    tenant = make_tenant(isolation="pool", plan="basic")
    build = create_build(tenant, status="failed", name="gone.csv")
    s3 = gateways.platform_s3().client
    version = s3.put_object(Bucket=tenant.bucket, Key=build.dataset_key, Body=b"a\n1\n")["VersionId"]
    s3.put_object(Bucket=tenant.bucket, Key=build.dataset_key, Body=b"a\n2\n")  # a later upload of that name
    s3.delete_object(Bucket=tenant.bucket, Key=build.dataset_key, VersionId=version)
    Build.objects.filter(pk=build.pk).update(dataset_version=version)

    response = client_for(create_member(tenant)).post(reverse("builds:retry", args=[build.code]), follow=True)

    assert response.redirect_chain == [(reverse("builds:detail", args=[build.code]), 302)]
    assert "The dataset gone.csv of this build is no longer in storage, so it cannot be built again. " \
           "Upload it again to start a new build." in text_of(response)
    assert list(Build.objects.filter(tenant=tenant).values_list("code", flat=True)) == [build.code]


def test_cancel_a_queued_build(acme):
    build = create_build(acme, status="queued")

    response = client_for(create_member(acme)).post(reverse("builds:cancel", args=[build.code]))

    build.refresh_from_db()
    assert (response.status_code, build.status) == (302, "cancelled")
    assert build.transitions.last().reason.startswith("cancelled by u")


def test_cancel_a_finished_build_says_why_not(acme):
    build = create_build(acme, status="succeeded")

    response = client_for(create_member(acme)).post(reverse("builds:cancel", args=[build.code]), follow=True)

    assert "Build is already succeeded." in text_of(response)


def test_detail_times_are_in_the_users_time_zone(acme):
    build = create_build(acme, status="queued", created_at=T0)  # 09:00 UTC

    tokyo = client_for(create_member(acme), tz="Asia/Tokyo").get(reverse("builds:detail", args=[build.code]))
    utc = client_for(create_member(acme)).get(reverse("builds:detail", args=[build.code]))
    bogus = client_for(create_member(acme), tz="Mars/Olympus").get(reverse("builds:detail", args=[build.code]))

    assert "since 18:00:00" in text_of(tokyo) and "times in Asia/Tokyo" in text_of(tokyo)
    assert "since 09:00:00" in text_of(utc) and "times in UTC" in text_of(utc)
    assert "since 09:00:00" in text_of(bogus)
    assert f'datetime="{T0.isoformat()}"' in tokyo.content.decode()


# ----- models -----

def test_models_page_lists_versions_with_metrics_and_actions_for_owner(acme):
    create_build(acme, version=True, metrics={"accuracy": 0.91})
    create_build(acme, version=True, metrics={"accuracy": 0.93}, approval="Approved")
    owner, member = create_member(acme, role="owner"), create_member(acme)

    as_owner = client_for(owner).get(reverse("builds:models", args=["acme"]))
    as_member = client_for(member).get(reverse("builds:models", args=["acme"]))

    assert [v.version for v in as_owner.context["versions"]] == [2, 1]
    assert "Accuracy 0.930" in text_of(as_owner) and "Approved" in text_of(as_owner)
    assert as_owner.content.decode().count('name="decision" value="approve"') == 1
    assert 'name="decision"' not in as_member.content.decode()
    assert reverse("builds:model_download", args=["acme", 2]) in as_member.content.decode()


def test_models_page_empty_state(acme):
    response = client_for(create_member(acme)).get(reverse("builds:models", args=["acme"]))

    assert "No model versions yet: upload a CSV; every successful build registers one." in text_of(response)


def test_owner_approves_a_version_and_returns_to_the_build(acme, monkeypatch):
    from core.aws import gateways

    decided = []

    class Registry:
        def update_model_package_approval(self, arn, status):
            decided.append((arn, status))

    monkeypatch.setattr(gateways, "platform_sagemaker", lambda: Registry())  # the AWS boundary only
    build = create_build(acme, version=True)
    owner = create_member(acme, role="owner")

    response = client_for(owner).post(reverse("builds:model_decide", args=["acme", 1]),
                                     {"decision": "approve", "next": reverse("builds:detail", args=[build.code])})
    evil = client_for(owner).post(reverse("builds:model_decide", args=["acme", 1]),
                                 {"decision": "reject", "next": "https://evil.example/"})

    version = ModelVersion.objects.get(build=build)
    assert (response.status_code, response.url) == (302, reverse("builds:detail", args=[build.code]))
    assert (evil.status_code, evil.url) == (302, reverse("builds:models", args=["acme"]))
    assert (version.approval_status, version.decided_by) == ("Rejected", owner)
    assert [status for _, status in decided] == ["Approved", "Rejected"]


def test_plain_member_cannot_decide(acme):
    create_build(acme, version=True)

    response = client_for(create_member(acme)).post(reverse("builds:model_decide", args=["acme", 1]),
                                               {"decision": "approve"})

    assert response.status_code == 404
    assert ModelVersion.objects.get().approval_status == "PendingManualApproval"


# ----- upload page helpers -----

def test_upload_status_reports_pending_build_or_rejection(acme):
    build = create_build(acme, status="queued", name="mine.csv")
    RejectedUpload.objects.create(tenant=acme, bucket=acme.bucket, key="uploads/bad.csv", dedup_key="x",
                                  reason="the file is empty")
    client = client_for(create_member(acme))
    url = reverse("builds:upload_status", args=["acme"])

    assert client.get(url, {"key": "uploads/mine.csv"}).json() == {
        "state": "build", "build": str(build.code), "status": "queued",
        "url": reverse("builds:detail", args=[build.code])}
    assert client.get(url, {"key": "uploads/bad.csv"}).json() == {"state": "rejected", "reason": "the file is empty"}
    assert client.get(url, {"key": "uploads/later.csv"}).json() == {"state": "pending"}
    assert client.get(url, {"key": "models/x"}).status_code == 400


def test_presign_rejects_bad_input_with_field_errors(acme):
    response = client_for(create_member(acme)).post(reverse("builds:presign", args=["acme"]),
                                               {"filename": "data.xlsx", "size": "0", "algorithm": "nope"})

    body = response.json()
    assert response.status_code == 400
    assert body["code"] == "invalid"
    assert sorted(body["fields"]) == ["algorithm", "filename", "size"]
    assert body["fields"]["filename"] == ["Upload a .csv file."]


def test_upload_page_lists_datasets_with_build_counts(make_tenant, make_member, samples_dir):
    from core.aws import gateways

    tenant = make_tenant(isolation="pool", plan="basic")
    s3 = gateways.platform_s3()
    s3.client.put_object(Bucket=tenant.bucket, Key=f"{tenant.upload_prefix}first.csv",
                         Body=(samples_dir / "wine.csv").read_bytes())
    build_row_for = __import__("tests.web_support", fromlist=["create_build"]).create_build
    build_row_for(tenant, name="first.csv")

    response = client_for(make_member(tenant)).get(reverse("builds:upload", args=[tenant.slug]))

    assert response.status_code == 200
    assert [(d["name"], d["builds"]) for d in response.context["datasets"]] == [("first.csv", 1)]
    assert page_title(response) == f"Upload a dataset · {tenant.name} · MLaaS Portal"
    html = response.content.decode()
    assert f'data-session-url="{reverse("builds:presign", args=[tenant.slug])}"' in html
    assert 'id="upload-progress"' in html and 'id="upload-algorithm"' in html and 'id="upload-target"' in html


def test_upload_page_empty_state(make_tenant, make_member):
    tenant = make_tenant(isolation="silo", plan="basic")

    response = client_for(make_member(tenant)).get(reverse("builds:upload", args=[tenant.slug]))

    assert "No datasets yet: upload a CSV above to start your first build." in text_of(response)


def test_build_again_on_a_missing_dataset_is_refused_with_a_form_error(make_tenant, make_member):
    tenant = make_tenant(isolation="silo", plan="basic")
    key = f"{tenant.upload_prefix}gone.csv"

    response = client_for(make_member(tenant)).post(reverse("builds:upload", args=[tenant.slug]),
                                                    {"dataset_key": key})

    assert response.status_code == 200
    assert response.context["start_form"].non_field_errors() == [f"No dataset `{key}` in the tenant's uploads."]
    assert f"Could not start the build: No dataset `{key}` in the tenant&#x27;s uploads." in text_of(response)
    assert not Build.objects.exists()


def test_build_again_on_an_uploaded_dataset_records_its_version_and_size(make_tenant, make_member,
                                                                        django_capture_on_commit_callbacks):
    from core.aws import gateways

    tenant = make_tenant(isolation="silo", plan="basic")
    key = f"{tenant.upload_prefix}again.csv"
    put = gateways.platform_s3().client.put_object(Bucket=tenant.bucket, Key=key, Body=b"a,diagnosis\n1,x\n")

    with django_capture_on_commit_callbacks():
        response = client_for(make_member(tenant)).post(reverse("builds:upload", args=[tenant.slug]),
                                                        {"dataset_key": key})

    build = Build.objects.get()
    assert (response.status_code, response.url) == (302, reverse("builds:detail", args=[build.code]))
    assert (build.source, build.dataset_key, build.dataset_size, build.dataset_version) == (
        "portal", key, 16, put.get("VersionId", ""))


def test_model_download_redirects_to_a_presigned_link_of_that_artifact(make_tenant, make_member):
    import requests

    from core.aws import gateways
    from tests.web_support import create_build

    tenant = make_tenant(isolation="silo", plan="basic")
    build = create_build(tenant, version=True)
    key = ModelVersion.objects.get(build=build).artifact_key
    gateways.platform_s3().client.put_object(Bucket=tenant.bucket, Key=key, Body=b"model bytes")

    response = client_for(make_member(tenant)).get(reverse("builds:model_download", args=[tenant.slug, 1]))

    assert response.status_code == 302
    assert f"/{key}?" in response.url and "X-Amz-Signature=" in response.url
    fetched = requests.get(response.url, timeout=10)
    assert (fetched.status_code, fetched.content) == (200, b"model bytes")
    assert f'filename="{tenant.slug}-model-v1.tar.gz"' in fetched.headers["Content-Disposition"]


def test_model_download_of_an_artifact_gone_from_storage_says_so_instead_of_linking(make_tenant, make_member):
    tenant = make_tenant(isolation="silo", plan="basic")
    create_build(tenant, version=True)  # its model.tar.gz was never written (or was lost)

    response = client_for(make_member(tenant)).get(reverse("builds:model_download", args=[tenant.slug, 1]),
                                                   follow=True)

    assert response.redirect_chain == [(reverse("builds:models", args=[tenant.slug]), 302)]
    assert "The model artifact of version 1 is no longer in storage, so it cannot be downloaded. " \
           "Build the model again to get a new version." in text_of(response)


@pytest.fixture
def samples_dir(tmp_path):
    from pathlib import Path

    from mlaas_steps.sample_data import write_sample_csvs

    return Path(next(iter(write_sample_csvs(tmp_path).values()))).parent


# ----- ownership: a stranger gets 404 on every page that takes an id -----

@pytest.mark.parametrize(("method", "name", "kind"), [
    ("get", "builds:detail", "build"),
    ("post", "builds:cancel", "build"),
    ("post", "builds:retry", "build"),
    ("get", "builds:upload", "tenant"),
    ("post", "builds:presign", "tenant"),
    ("get", "builds:upload_status", "tenant"),
    ("get", "builds:models", "tenant"),
    ("post", "builds:model_decide", "version"),
    ("get", "builds:model_download", "version"),
])
def test_another_tenants_user_gets_404(acme, globex, method, name, kind):
    build = create_build(globex, status="failed", version=True)
    args = {"build": [build.code], "tenant": ["globex"], "version": ["globex", 1]}[kind]
    stranger = client_for(create_member(acme, role="owner"))

    response = getattr(stranger, method)(reverse(name, args=args), {"key": "uploads/x.csv", "decision": "approve"})

    assert response.status_code == 404
    assert "Not found" in text_of(response) and page_title(response) == "Not found · MLaaS Portal"
    assert Build.objects.count() == 1
    assert ModelVersion.objects.get().approval_status == "PendingManualApproval"


def test_malformed_build_code_is_404(acme):
    assert client_for(create_member(acme)).get("/builds/not-a-uuid/").status_code == 404


def test_pages_need_login(client, acme):
    for url in (reverse("builds:list"), reverse("builds:upload", args=["acme"]), reverse("builds:models",
                                                                                          args=["acme"])):
        response = client.get(url)
        assert (response.status_code, response.url.split("?")[0]) == (302, reverse("login"))


def test_algorithms_page_is_staff_only_and_lists_typical_metrics(reference_data, staff_user, acme):
    from builds.models import Algorithm

    Algorithm.objects.filter(slug="linear-regressor").update(typical_metrics={
        "measured_at": "2026-03-01T00:00:00+00:00",
        "samples": [{"dataset": "diabetes", "target": "progression", "rows": 442, "test_rows": 67,
                     "metrics": {"rmse": 53.1, "mae": 42.5, "r2": 0.48}}]})

    staff = client_for(staff_user).get(reverse("builds:algorithms"))
    member = client_for(create_member(acme)).get(reverse("builds:algorithms"))

    assert (staff.status_code, member.status_code) == (200, 404)
    assert "Diabetes (442 rows) RMSE 53.100 MAE 42.500 R² 0.480" in text_of(staff)
    assert text_of(staff).count("not measured yet") == 5


def test_presign_success_returns_a_post_for_the_upload_prefix(make_tenant, make_member):
    tenant = make_tenant(isolation="pool", plan="basic")

    response = client_for(make_member(tenant)).post(reverse("builds:presign", args=[tenant.slug]),
                                                   {"filename": "my data.csv", "size": "1000",
                                                    "algorithm": "linear-classifier", "target": "y"})

    body = response.json()
    assert response.status_code == 200
    assert body["key"].startswith(f"{tenant.upload_prefix}") and body["key"].endswith("-my-data.csv")
    assert (body["fields"]["key"], body["max_bytes"], body["expires_in"]) == (body["key"], 1000, 900)
    assert body["fields"]["x-amz-meta-algorithm"] == "linear-classifier"
    assert json.loads(json.dumps(body)) == body
