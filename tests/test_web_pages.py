"""Portal pages beyond builds: service catalog (typical metrics measured by `manage.py measure_algorithms`,
plans, request access -> staff's pending list), API tokens, tenants, plans, onboarding, login; every page has
a <title>, shows field errors next to the field and has a clear empty state."""

from __future__ import annotations

import re
from datetime import timedelta
from io import StringIO

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.urls import reverse

from builds.models import Algorithm
from tenants.models import AccessRequest, ApiToken, Plan
from tests.web_support import client_for, create_build, create_member, create_tenant, page_title, text_of

# ----- catalog -----

def test_measure_algorithms_stores_typical_metrics_the_catalog_shows(reference_data, client):
    out = StringIO()

    call_command("measure_algorithms", "--algorithm", "linear-classifier", "--algorithm", "linear-regressor",
                 stdout=out)

    classifier = Algorithm.objects.get(slug="linear-classifier").typical_metrics
    regressor = Algorithm.objects.get(slug="linear-regressor").typical_metrics
    assert [(s["dataset"], s["target"], s["rows"]) for s in classifier["samples"]] == [
        ("breast_cancer", "diagnosis", 569), ("wine", "cultivar", 178)]
    assert sorted(classifier["samples"][0]["metrics"]) == ["accuracy", "f1", "precision", "recall", "roc_auc"]
    assert classifier["samples"][0]["metrics"]["accuracy"] > 0.9  # logistic regression on breast cancer
    assert [(s["dataset"], sorted(s["metrics"])) for s in regressor["samples"]] == [("diabetes", ["mae", "r2", "rmse"])]
    assert 0.2 < regressor["samples"][0]["metrics"]["r2"] < 0.8
    assert out.getvalue().splitlines()[-1] == "Measured 2 algorithm(s)."
    assert Algorithm.objects.get(slug="gbm-classifier").typical_metrics == {}

    page = client.get(reverse("catalog"))

    accuracy = classifier["samples"][0]["metrics"]["accuracy"]
    assert f"Breast cancer sample (569 rows): Accuracy {accuracy:.3f}" in text_of(page)
    assert text_of(page).count("Not measured yet.") == 4


def test_measure_algorithms_rejects_unknown_slugs(reference_data):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="Unknown algorithm"):
        call_command("measure_algorithms", "--algorithm", "magic")


def test_catalog_lists_algorithms_with_input_output_and_plans_with_limits_and_prices(reference_data, client):
    response = client.get(reverse("catalog"))

    text = text_of(response)
    assert response.status_code == 200 and page_title(response) == "Service catalog · MLaaS Portal"
    assert [a.slug for a in response.context["algorithms"]] == list(
        Algorithm.objects.filter(active=True).values_list("slug", flat=True))
    assert text.count("Input CSV with a header row") == 6 and text.count("Output A model artifact") == 6
    assert [p.slug for p in response.context["plans"]] == ["basic", "standard", "premium"]
    assert "$99 / month 10 build hours included, then $4.00 / hour 1 build at a time" in text
    assert "$499 / month 60 build hours included, then $3.00 / hour 2 builds at a time, ahead of lower tiers" in text
    assert "Hyperparameter tuning, up to 10 trials" in text and "Uploads up to 50.0 MB" in text


def test_request_access_errors_show_next_to_the_fields(reference_data, client):
    response = client.post(reverse("catalog"), {"company": "", "contact_email": "not-an-email"})

    html = response.content.decode()
    assert response.status_code == 200
    assert response.context["form"].errors == {"company": ["This field is required."],
                                               "contact_email": ["Enter a valid email address."]}
    assert re.search(r'<input[^>]*name="contact_email"[^>]*aria-invalid="true"[^>]*>\s*'
                     r'<ul class="errorlist" id="id_contact_email_error"><li>Enter a valid email address.</li></ul>',
                     html)
    assert AccessRequest.objects.count() == 0


def test_request_access_message_over_the_limit_is_refused(reference_data, client):
    from tenants.models import ACCESS_REQUEST_MESSAGE_MAX_LENGTH
    from tenants.services import access_request_create

    too_long = "x" * (ACCESS_REQUEST_MESSAGE_MAX_LENGTH + 1)

    response = client.post(reverse("catalog"), {"company": "Umbrella", "contact_email": "ceo@umbrella.example",
                                                "message": too_long})
    with pytest.raises(ValidationError) as refused:
        access_request_create(company="Umbrella", contact_email="ceo@umbrella.example", plan=None, message=too_long)

    assert response.status_code == 200
    assert response.context["form"].errors == {"message": [
        f"Ensure this value has at most {ACCESS_REQUEST_MESSAGE_MAX_LENGTH} characters (it has 2001)."]}
    assert "At most 2,000 characters." in text_of(response)
    assert list(refused.value.message_dict) == ["message"]
    assert AccessRequest.objects.count() == 0


def test_request_access_is_rate_limited_per_client_address(reference_data, settings):
    from django.test import Client
    from django.utils import timezone

    settings.MLAAS_ACCESS_REQUESTS_PER_HOUR = 3
    body = {"company": "Umbrella", "contact_email": "ceo@umbrella.example", "message": "Hello"}
    client = Client(REMOTE_ADDR="203.0.113.9")

    accepted = [client.post(reverse("catalog"), body).status_code for _ in range(3)]
    refused = client.post(reverse("catalog"), body)
    elsewhere = Client(REMOTE_ADDR="198.51.100.7").post(reverse("catalog"), body)
    AccessRequest.objects.filter(client_address="203.0.113.9").update(
        created_at=timezone.now() - timedelta(hours=1, minutes=1))
    an_hour_later = client.post(reverse("catalog"), body)

    assert accepted == [302, 302, 302]
    assert refused.status_code == 429
    assert refused.context["form"].non_field_errors() == [
        "We already received several requests from your network this hour; please try again later or write to "
        "us by email."]
    assert (elsewhere.status_code, an_hour_later.status_code) == (302, 302)
    assert sorted(AccessRequest.objects.values_list("client_address", flat=True)) == [
        "198.51.100.7"] + ["203.0.113.9"] * 4


def test_request_access_shows_up_as_pending_for_staff(reference_data, client, staff_user):
    standard = Plan.objects.get(slug="standard")
    preselected = client.get(reverse("catalog"), {"plan": standard.pk})

    sent = client.post(reverse("catalog"), {"company": "Umbrella Corp", "contact_email": "ceo@umbrella.example",
                                            "plan": standard.pk, "message": "We want churn models."}, follow=True)
    staff = client_for(staff_user)
    pending = staff.get(reverse("tenants:access_requests"))
    request = AccessRequest.objects.get()
    onboard = staff.get(reverse("tenants:onboard"), {"request": request.code})
    staff.post(reverse("tenants:access_request_done", args=[request.code]))
    after = staff.get(reverse("tenants:access_requests"))

    assert preselected.context["form"]["plan"].value() == str(standard.pk)
    assert "Thanks! We received your request and will be in touch." in text_of(sent)
    assert "Umbrella Corp ceo@umbrella.example Standard We want churn models." in text_of(pending)
    assert onboard.context["form"].initial == {"name": "Umbrella Corp", "owner_email": "ceo@umbrella.example",
                                               "plan": standard, "access_request": request.code}
    assert "No pending requests." in text_of(after)


# ----- tokens -----

def test_tokens_page_creates_shows_once_and_revokes(db, staff_user):
    client = client_for(staff_user)

    created = client.post(reverse("tokens"), {"name": "nightly upload"})
    raw = re.search(r'<code id="new-token">(mlp_[^<]+)</code>', created.content.decode()).group(1)
    token = ApiToken.objects.get()
    listing = client.get(reverse("tokens"))
    api = client.get("/api/v1/builds", HTTP_AUTHORIZATION=f"Bearer {raw}")
    revoked = client.post(reverse("tokens"), {"revoke": token.pk}, follow=True)
    after = client.get("/api/v1/builds", HTTP_AUTHORIZATION=f"Bearer {raw}")

    assert (token.name, token.prefix, token.key_hash) == ("nightly upload", raw[:12], ApiToken.hash(raw))
    assert raw not in listing.content.decode() and f"{raw[:12]}…" in listing.content.decode()
    assert api.status_code == 200
    assert "Token revoked." in text_of(revoked) and "No tokens yet" in text_of(revoked)
    assert after.status_code == 401


def test_token_name_too_long_shows_error_next_to_field(db, staff_user):
    response = client_for(staff_user).post(reverse("tokens"), {"name": "x" * 81})

    assert response.context["form"].errors == {"name": ["Ensure this value has at most 80 characters (it has 81)."]}
    assert 'id="id_name_error"' in response.content.decode()
    assert ApiToken.objects.count() == 0


def test_another_users_token_cannot_be_revoked(reference_data, staff_user):
    from tenants.services import api_token_create

    tenant = create_tenant()
    owner = create_member(tenant)
    api_token_create(user=owner, name="theirs")

    response = client_for(staff_user).post(reverse("tokens"), {"revoke": ApiToken.objects.get().pk}, follow=True)

    assert "No such token." in text_of(response)
    assert ApiToken.objects.count() == 1


# ----- tenants (staff) -----

def test_tenants_list_search_status_and_empty_states(reference_data, staff_user):
    client = client_for(staff_user)
    empty = client.get(reverse("tenant_list"))
    create_tenant(slug="acme", name="Acme Corp")
    create_tenant(slug="globex", status="suspended")

    found = client.get(reverse("tenant_list"), {"q": "acm"})
    suspended = client.get(reverse("tenant_list"), {"status": "suspended"})
    none = client.get(reverse("tenant_list"), {"q": "zzz"})

    assert "No tenants yet: onboard your first tenant." in text_of(empty)
    assert [t.slug for t in found.context["page_obj"].object_list] == ["acme"]
    assert [t.slug for t in suspended.context["page_obj"].object_list] == ["globex"]
    assert "No tenants match. Show all tenants." in text_of(none)


def test_onboarding_shows_the_owner_set_password_link(reference_data, staff_user, client,
                                                      django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks():  # provisioning is enqueued on commit; not run here
        response = client_for(staff_user).post(reverse("tenants:onboard"), {
            "slug": "umbrella", "name": "Umbrella", "plan": "basic", "isolation": "pool",
            "owner_email": "ceo@umbrella.example"}, follow=True)

    link = re.search(r"Send the owner this link to set a password: (http://testserver(/reset/\S+/))",
                     text_of(response))
    form_page = client.get(link.group(2), follow=True)
    set_password = client.post(form_page.redirect_chain[-1][0],
                               {"new_password1": "a-Long-pass-123", "new_password2": "a-Long-pass-123"}, follow=True)
    logged = client.post(reverse("login"), {"username": "ceo@umbrella.example", "password": "a-Long-pass-123"})

    assert page_title(form_page) == "Set your password · MLaaS Portal"
    assert "Password set" in text_of(set_password)
    assert (logged.status_code, logged.url) == (302, reverse("home"))


def test_tenant_settings_errors_show_next_to_the_fields(reference_data):
    tenant = create_tenant()
    owner = create_member(tenant, role="owner")

    response = client_for(owner).post(reverse("tenants:settings", args=[tenant.slug]),
                                     {"default_target": "y", "monthly_budget": "-5", "budget_alert_percent": "300"})

    assert response.status_code == 200
    assert sorted(response.context["settings_form"].errors) == ["budget_alert_percent", "monthly_budget"]
    assert 'id="id_monthly_budget_error"' in response.content.decode()
    tenant.refresh_from_db()
    assert tenant.monthly_budget is None


def test_plans_page_lists_limits_prices_and_tenant_counts(reference_data, staff_user):
    create_tenant(plan="basic")
    create_tenant(plan="basic", status="offboarded")

    response = client_for(staff_user).get(reverse("tenants:plans"))

    assert [(p.slug, p.tenant_count) for p in response.context["plans"]] == [
        ("premium", 0), ("standard", 0), ("basic", 1)]
    assert ("Basic basic 1 1 4 / 1 / 0 2 size bands 1 × ml.m5.large, 1 × ml.m5.xlarge – 50.0 MB $99.00 10 $4.00 "
            "Edit") in text_of(response)


def test_login_errors_are_shown(db, client):
    response = client.post(reverse("login"), {"username": "x@example.com", "password": "wrong"})

    assert response.status_code == 200
    assert "Please enter a correct username and password." in text_of(response)


def test_login_locks_the_username_at_that_address_after_repeated_failures(db, client, settings):
    from django.contrib.auth.models import User
    from django.test import Client

    User.objects.create_user(username="ceo@umbrella.example", password="a-Long-pass-123")
    User.objects.create_user(username="cfo@umbrella.example", password="a-Long-pass-123")
    wrong = {"username": "ceo@umbrella.example", "password": "wrong"}
    right = {"username": "ceo@umbrella.example", "password": "a-Long-pass-123"}

    failures = [client.post(reverse("login"), wrong).status_code for _ in range(settings.AXES_FAILURE_LIMIT)]
    locked = client.post(reverse("login"), right)
    other_user = client.post(reverse("login"), {"username": "cfo@umbrella.example", "password": "a-Long-pass-123"})
    other_address = Client(REMOTE_ADDR="198.51.100.7").post(reverse("login"), right)

    assert failures == [200] * (settings.AXES_FAILURE_LIMIT - 1) + [429]
    assert locked.status_code == 429
    assert page_title(locked) == "Too many failed logins · MLaaS Portal"
    assert (f"After {settings.AXES_FAILURE_LIMIT} wrong passwords for ceo@umbrella.example, logging in from this "
            f"address is paused for {settings.AXES_COOLOFF_TIME.seconds // 60} minutes.") in text_of(locked)
    assert not locked.wsgi_request.user.is_authenticated
    assert (other_user.status_code, other_user.url) == (302, reverse("home"))
    assert (other_address.status_code, other_address.url) == (302, reverse("home"))


def test_login_success_clears_earlier_failures(db, client, settings):
    from django.contrib.auth.models import User

    User.objects.create_user(username="ceo@umbrella.example", password="a-Long-pass-123")
    wrong = {"username": "ceo@umbrella.example", "password": "wrong"}
    right = {"username": "ceo@umbrella.example", "password": "a-Long-pass-123"}

    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        client.post(reverse("login"), wrong)
    client.post(reverse("login"), right)
    client.post(reverse("logout"))
    again = [client.post(reverse("login"), wrong).status_code for _ in range(settings.AXES_FAILURE_LIMIT - 1)]

    assert again == [200] * (settings.AXES_FAILURE_LIMIT - 1)
    assert client.post(reverse("login"), right).status_code == 302


# ----- every page: a title, a phone-friendly menu -----

def _pages(staff_user):
    tenant = create_tenant(slug="acme", name="Acme Corp")
    build = create_build(tenant, version=True)
    owner = create_member(tenant, role="owner")
    staff_pages = [reverse(n) for n in ("home", "tokens", "builds:list", "builds:algorithms", "tenant_list",
                                        "tenants:plans", "tenants:access_requests", "tenants:onboard")]
    staff_pages += [reverse("tenants:detail", args=["acme"]), reverse("builds:detail", args=[build.code]),
                    reverse("tenants:plan_edit", args=["basic"])]
    tenant_pages = [reverse("home"), reverse("builds:list"), reverse("builds:models", args=["acme"]),
                    reverse("builds:detail", args=[build.code]), reverse("tenants:detail", args=["acme"]),
                    reverse("tokens")]
    return [(staff_user, url) for url in staff_pages] + [(owner, url) for url in tenant_pages] + [
        (None, reverse("catalog")), (None, reverse("login"))]


def test_every_page_has_a_specific_title_and_the_menu(reference_data, staff_user):
    from django.test import Client

    seen = []
    for user, url in _pages(staff_user):
        response = (client_for(user) if user else Client()).get(url)
        html, title = response.content.decode(), page_title(response)
        viewport = 'name="viewport" content="width=device-width, initial-scale=1"' in html
        seen.append((url, response.status_code, bool(re.fullmatch(r".+ · MLaaS Portal", title)),
                     'id="nav-toggle"' in html, viewport))

    assert [row for row in seen if row[1:] != (200, True, True, True)] == []
    assert len(seen) == 19


def test_current_page_is_marked_in_the_menu(reference_data, staff_user):
    html = client_for(staff_user).get(reverse("tenants:plans")).content.decode()

    assert re.findall(r'<a href="([^"]+)" aria-current="page">', html) == [reverse("tenants:plans")]
