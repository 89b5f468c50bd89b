from __future__ import annotations

from django import forms

from builds.models import Algorithm, Build
from tenants.models import Plan, Tenant


class BuildFilterForm(forms.Form):
    tenant = forms.ModelChoiceField(queryset=Tenant.objects.all(), to_field_name="slug", required=False)
    plan = forms.ModelChoiceField(queryset=Plan.objects.all(), to_field_name="slug", required=False)
    status = forms.ChoiceField(choices=[("", "Any status")] + list(Build.Status.choices), required=False)
    algorithm = forms.ModelChoiceField(queryset=Algorithm.objects.all(), to_field_name="slug", required=False)
    date_from = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    sort = forms.ChoiceField(choices=[("-created", "Newest"), ("created", "Oldest"), ("status", "Status"),
                                      ("tenant", "Tenant"), ("algorithm", "Algorithm")], required=False)


class StartBuildForm(forms.Form):
    dataset_key = forms.CharField(max_length=1024)
    algorithm = forms.ModelChoiceField(queryset=Algorithm.objects.filter(active=True), to_field_name="slug",
                                       required=False, empty_label="Tenant default")
    target = forms.CharField(max_length=120, required=False)
