from __future__ import annotations

from django import forms

from builds.models import Algorithm, Build
from tenants.models import Plan, Tenant

SORT_CHOICES = [("-created", "Newest first"), ("created", "Oldest first"), ("status", "Status"),
                ("tenant", "Tenant"), ("plan", "Plan"), ("algorithm", "Algorithm"),
                ("-duration", "Longest first"), ("duration", "Shortest first")]


class AlgorithmForm(forms.ModelForm):
    """An algorithm of the catalog (admin and the staff page): saving it pins the step image it names.

    `image` is a tag of the platform's step repository (`latest`), `REPOSITORY:TAG` or `REPOSITORY@sha256:...`;
    DescribeImages must find it, and the digest it reports is what builds then run.
    """

    image = forms.CharField(max_length=300, initial="latest",
                            help_text="Step image: a tag of the platform's repository (latest), REPOSITORY:TAG or "
                                      "REPOSITORY@sha256:DIGEST. Saving pins the digest ECR reports for it.")

    class Meta:
        model = Algorithm
        fields = ["slug", "name", "description", "problem_type", "entry_point", "default_hyperparameters",
                  "tuning_ranges", "objective_metric", "min_metric", "active"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        instance = self.instance
        if instance.pk and instance.image_repository and not self.is_bound:
            repository = instance.image_repository.rsplit("/", 1)[-1]
            self.initial["image"] = (f"{repository}:{instance.image_tag}" if instance.image_tag
                                     else f"{repository}@{instance.image_digest}")
        self.resolved_image = None

    def clean_image(self) -> str:
        from builds.step_image import StepImageError, step_image_resolve
        from core.aws.errors import AwsError, AwsNotFound

        reference = self.cleaned_data["image"].strip()
        try:
            self.resolved_image = step_image_resolve(reference)
        except StepImageError as exc:
            raise forms.ValidationError(str(exc)) from exc
        except AwsNotFound as exc:
            raise forms.ValidationError(f"{exc} Publish it first: `manage.py image_publish --tag TAG`.") from exc
        except AwsError as exc:
            raise forms.ValidationError(f"ECR could not be asked about the image {reference} ({exc}); "
                                        "try again.") from exc
        return reference

    def save(self, commit: bool = True) -> Algorithm:
        from builds.step_image import parse_reference

        algorithm = super().save(commit=False)
        _, tag, _ = parse_reference(self.cleaned_data["image"])
        algorithm.image_repository = self.resolved_image.repository_uri
        algorithm.image_tag = tag
        algorithm.image_digest = self.resolved_image.digest
        if commit:
            algorithm.save()
        return algorithm


class BuildFilterForm(forms.Form):
    # A text field with suggestions (static/js/tenant_autocomplete.js asks tenants:autocomplete), not a
    # select: a select would render every tenant on every page (10,000 tenants: half a megabyte).
    tenant = forms.CharField(required=False, max_length=40, widget=forms.TextInput(attrs={
        "list": "tenant-options", "autocomplete": "off", "placeholder": "Any tenant", "data-tenant-autocomplete": ""}))
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
        self.tenants = tenants if tenants is not None else Tenant.objects.all()

    def clean_tenant(self) -> Tenant | None:
        """The tenant of that slug among the ones the viewer may filter by (one query)."""
        slug = self.cleaned_data["tenant"].strip()
        if not slug:
            return None
        tenant = self.tenants.filter(slug=slug).first()
        if tenant is None:
            raise forms.ValidationError(f"No tenant with the slug “{slug}”.")
        return tenant

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
