from __future__ import annotations

from django import forms

from tenants.models import ACCESS_REQUEST_MESSAGE_MAX_LENGTH, Membership, Plan, Tenant, Webhook


class OnboardForm(forms.Form):
    slug = forms.SlugField(max_length=30, help_text="Lowercase letters, digits, hyphens; used in AWS names.")
    name = forms.CharField(max_length=120, required=False)
    plan = forms.ModelChoiceField(queryset=Plan.objects.all(), to_field_name="slug", empty_label=None)
    isolation = forms.ChoiceField(choices=Tenant.Isolation.choices)
    owner_email = forms.EmailField(required=False)
    # The access request being completed (its AWS Marketplace customer, if any, is linked to the new tenant).
    access_request = forms.UUIDField(required=False, widget=forms.HiddenInput)


class PlanForm(forms.ModelForm):
    class Meta:
        model = Plan
        fields = ["name", "tier_rank", "plan_concurrent_limit", "tenant_concurrent_limit",
                  "processing_instance_type", "processing_instance_count", "training_instance_type",
                  "training_instance_count", "tuning_included", "max_tuning_jobs", "upload_size_limit_bytes",
                  "monthly_fee", "included_build_hours", "overage_price_per_hour", "size_bands",
                  "marketplace_dimension", "borrowing_limit", "api_requests_per_minute"]
        widgets = {"size_bands": forms.Textarea(attrs={"rows": 8, "spellcheck": "false"})}

    def clean_borrowing_limit(self):
        from django.conf import settings

        value = self.cleaned_data.get("borrowing_limit")
        account = settings.MLAAS_ACCOUNT_CONCURRENT_LIMIT
        if value is not None and not 0 <= value <= account:
            raise forms.ValidationError(f"The borrowing limit must be between 0 and the account's concurrent limit "
                                        f"({account}).")
        return value

    def clean_api_requests_per_minute(self):
        value = self.cleaned_data.get("api_requests_per_minute")
        if value is not None and value < 1:
            raise forms.ValidationError("Allow at least 1 API request a minute (0 would lock the plan's tenants "
                                        "out of the API).")
        return value

    def clean_size_bands(self):
        from tenants.sizing import size_bands_clean

        return size_bands_clean(self.cleaned_data.get("size_bands"))

    def clean(self):
        from mlaas_steps.instances import JOB_INSTANCE_TYPES

        cleaned = super().clean()
        for kind, allowed in JOB_INSTANCE_TYPES.items():
            value = cleaned.get(f"{kind}_instance_type")
            if value and value not in allowed:
                self.add_error(f"{kind}_instance_type", f"SageMaker does not run {kind} jobs on `{value}`; "
                                                        f"choose one of {', '.join(sorted(allowed))}.")
        return cleaned


class InviteForm(forms.Form):
    email = forms.EmailField()
    role = forms.ChoiceField(choices=Membership.Role.choices, initial=Membership.Role.MEMBER)


class OffboardForm(forms.Form):
    delete_data = forms.TypedChoiceField(
        choices=[("0", "Retain the tenant's data"), ("1", "Delete the tenant's data")], coerce=lambda v: v == "1",
        widget=forms.RadioSelect, initial="0")
    confirm_slug = forms.CharField(help_text="Type the tenant's slug to confirm.")


class TenantSettingsForm(forms.Form):
    # The catalog belongs to builds; the tenant's foreign key (declared by string) names its model.
    default_algorithm = forms.ModelChoiceField(
        queryset=Tenant._meta.get_field("default_algorithm").related_model.objects.filter(active=True),
        required=False)
    default_target = forms.CharField(max_length=120, required=False)
    monthly_budget = forms.DecimalField(max_digits=10, decimal_places=2, required=False, min_value=0)
    budget_alert_percent = forms.IntegerField(min_value=1, max_value=100, initial=80, required=False)
    budget_hard_cap = forms.BooleanField(
        required=False, label="Hard cap: hold new builds at the budget",
        help_text="Queued builds wait once this month's spend reaches the budget; running builds finish.")


class ChangePlanForm(forms.Form):
    plan = forms.ModelChoiceField(queryset=Plan.objects.all(), to_field_name="slug", empty_label=None)


class AccessRequestForm(forms.Form):
    company = forms.CharField(max_length=120)
    contact_email = forms.EmailField()
    plan = forms.ModelChoiceField(queryset=Plan.objects.all(), required=False)
    message = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False,
                              max_length=ACCESS_REQUEST_MESSAGE_MAX_LENGTH,
                              help_text=f"At most {ACCESS_REQUEST_MESSAGE_MAX_LENGTH:,} characters.")


class MarketplaceRegistrationForm(forms.Form):
    company = forms.CharField(max_length=120)
    contact_email = forms.EmailField(help_text="We send the login for your portal here.")
    plan = forms.ModelChoiceField(queryset=Plan.objects.all(), required=False, empty_label="Not sure yet")


class SchedulingPolicyForm(forms.Form):
    """Staff: the fair-share memory and the share held for newly active tenants (tenants.SchedulingPolicy)."""

    usage_half_life_hours = forms.FloatField(
        label="Usage half-life (hours)", min_value=0.1, max_value=24 * 90,
        error_messages={"min_value": "The half-life must be more than 0: at least 0.1 hours.",
                        "max_value": "The half-life must be at most 90 days (2160 hours)."},
        help_text="Build time used this long ago counts half as much in fair-share ordering.")
    new_tenant_reserved_share = forms.FloatField(
        label="Share reserved for newly active tenants", min_value=0.0, max_value=0.5,
        error_messages={"min_value": "The reserved share cannot be negative.",
                        "max_value": "Reserve at most half of the account (0.5)."},
        help_text="0 to 0.5 of the account's concurrent limit; only tenants with nothing running and under a "
                  "build-minute of decayed usage may start builds on it.")


class FairShareWeightForm(forms.Form):
    fair_share_weight = forms.FloatField(
        label="Fair-share weight", min_value=0.01, max_value=1000,
        error_messages={"min_value": "The weight must be more than 0: at least 0.01.",
                        "max_value": "The weight must be at most 1000."},
        help_text="Share of its plan's capacity relative to the plan's other tenants (default 1).")
class WebhookForm(forms.Form):
    url = forms.CharField(max_length=2000, label="URL", widget=forms.URLInput(attrs={"placeholder": "https://"}),
                          help_text="https only; it must reach a public address.")
    events = forms.MultipleChoiceField(choices=Webhook.Event.choices,
                                       widget=forms.CheckboxSelectMultiple)
