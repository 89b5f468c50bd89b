"""Members: staff invite owners and members; an owner invites members of its own tenant only."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.contrib.messages import get_messages
from django.core.exceptions import ValidationError
from django.urls import reverse

from tenants import services
from tenants.models import Membership


def _memberships(tenant) -> list[tuple[str, str]]:
    return list(tenant.memberships.order_by("user__username").values_list("user__username", "role"))


def _messages(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


@pytest.mark.parametrize("role", ["owner", "member"])
def test_staff_invites_owner_or_member(tenant_row, staff_user, logged_in, role):
    tenant = tenant_row()

    response = logged_in(staff_user).post(reverse("tenants:invite", args=[tenant.slug]),
                                          {"email": "New.Person@Example.com", "role": role})

    user = User.objects.get(username="new.person@example.com")
    assert (response.status_code, response.url) == (302, reverse("tenants:detail", args=[tenant.slug]))
    assert _memberships(tenant) == [("new.person@example.com", role)]
    assert user.has_usable_password() is False
    assert _messages(response)[0].startswith("Invited new.person@example.com. Send them this link to set a "
                                             "password: http://testserver/reset/")
    assert list(tenant.events.values_list("action", "detail", "actor")) == [
        ("member_invited", f"new.person@example.com as {role}", staff_user.pk)]


def test_owner_invites_member_of_own_tenant(tenant_row, make_member, logged_in):
    tenant = tenant_row()
    owner = make_member(tenant, role="owner")

    response = logged_in(owner).post(reverse("tenants:invite", args=[tenant.slug]),
                                     {"email": "colleague@example.com", "role": "member"})

    assert response.status_code == 302
    assert _memberships(tenant) == sorted([("colleague@example.com", "member"), (owner.username, "owner")])


def test_owner_cannot_invite_an_owner(tenant_row, make_member, logged_in):
    tenant = tenant_row()
    owner = make_member(tenant, role="owner")

    response = logged_in(owner).post(reverse("tenants:invite", args=[tenant.slug]),
                                     {"email": "coowner@example.com", "role": "owner"})

    assert (response.status_code, _messages(response)) == (302, ["Owners can invite members only."])
    assert _memberships(tenant) == [(owner.username, "owner")]
    assert not User.objects.filter(username="coowner@example.com").exists()


def test_owner_invite_url_of_another_tenant_is_404(tenant_row, make_member, logged_in):
    own, other = tenant_row(), tenant_row()
    owner = make_member(own, role="owner")

    response = logged_in(owner).post(reverse("tenants:invite", args=[other.slug]),
                                     {"email": "plant@example.com", "role": "member"})

    assert response.status_code == 404
    assert (_memberships(other), User.objects.filter(username="plant@example.com").exists()) == ([], False)


def test_plain_member_cannot_invite(tenant_row, make_member, logged_in):
    tenant = tenant_row()
    member = make_member(tenant, role="member")

    response = logged_in(member).post(reverse("tenants:invite", args=[tenant.slug]),
                                      {"email": "friend@example.com", "role": "member"})

    assert response.status_code == 404
    assert _memberships(tenant) == [(member.username, "member")]


def test_owner_of_one_tenant_cannot_invite_into_another_through_the_service(tenant_row, make_member):
    own, other = tenant_row(), tenant_row()
    owner = make_member(own, role="owner")

    with pytest.raises(ValidationError) as refused:
        services.member_invite(tenant=other, email="plant@example.com", role="member", actor=owner)

    assert refused.value.messages == ["Only staff or an owner of this tenant can invite users."]
    assert _memberships(other) == []


@pytest.mark.parametrize("existing", ["member_elsewhere", "staff"])
def test_invite_of_user_who_belongs_elsewhere_is_refused(tenant_row, make_member, staff_user, existing):
    tenant, other = tenant_row(), tenant_row()
    taken = make_member(other) if existing == "member_elsewhere" else staff_user

    with pytest.raises(ValidationError) as refused:
        services.member_invite(tenant=tenant, email=taken.username, role="member", actor=staff_user)

    assert refused.value.message_dict == {"email": [f"{taken.username} already belongs to a tenant or to staff."]}
    assert Membership.objects.filter(tenant=tenant).count() == 0
