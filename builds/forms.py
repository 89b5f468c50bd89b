from __future__ import annotations

from django import forms

from builds.models import Algorithm, Build
from tenants.models import Plan, Tenant

SORT_CHOICES = [("-created", "Newest first"), ("created", "Oldest first"), ("status", "Status"),
                ("tenant", "Tenant"), ("plan", "Plan"), ("algorithm", "Algorithm"),
                ("-duration", "Longest first"), ("duration", "Shortest first")]


class BuildFilterForm(forms.Form):
    tenant = forms.ModelChoiceField(queryset=Tenant.objects.all(), to_field_name="slug", required=False,
                                    empty_label="Any tenant")
    plan = forms.ModelChoiceField(queryset=Plan.objects.all(), to_field_name="slug", required=False,
                                  empty_label="Any plan")
    status = forms.ChoiceField(choices=[("", "Any status")] + list(Build.Status.choices), required=False)
    algorithm = forms.ModelChoiceField(queryset=Algorithm.objects.all(), to_field_name="slug", required=False,
                                       empty_label="Any algorithm")
    date_from = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))
    sort = forms.ChoiceField(choices=SORT_CHOICES, required=False)

    def __init__(self, *args, tenants=None, **kwargs):
        super().__init__(*args, **kwargs)
        if tenants is not None:
            self.fields["tenant"].queryset = tenants

    def clean(self):
        data = super().clean()
        if data.get("date_from") and data.get("date_to") and data["date_from"] > data["date_to"]:
            self.add_error("date_to", "The end date is before the start date.")
        return data

    def filters(self) -> dict:
        """The valid filters as selector arguments; invalid fields are left out (their errors are shown)."""
        self.is_valid()
        data = getattr(self, "cleaned_data", {})
        return {"tenant": data["tenant"].slug if data.get("tenant") else "",
                "plan": data["plan"].slug if data.get("plan") else "",
                "status": data.get("status") or "",
                "algorithm": data["algorithm"].slug if data.get("algorithm") else "",
                "date_from": data.get("date_from"), "date_to": data.get("date_to"),
                "sort": data.get("sort") or "-created"}


class StartBuildForm(forms.Form):
    dataset_key = forms.CharField(max_length=1024, widget=forms.HiddenInput)
    algorithm = forms.ModelChoiceField(queryset=Algorithm.objects.filter(active=True), to_field_name="slug",
                                       required=False, empty_label="Tenant default")
    target = forms.CharField(max_length=120, required=False)
