from django.contrib import admin

from builds.forms import AlgorithmForm
from builds.models import Algorithm, Build, BuildStep, BuildTransition, ModelVersion, RejectedUpload


@admin.register(Algorithm)
class AlgorithmAdmin(admin.ModelAdmin):
    """Saving checks the step image with DescribeImages and pins its digest (AlgorithmForm)."""

    form = AlgorithmForm
    list_display = ["slug", "name", "problem_type", "objective_metric", "min_metric", "image_tag", "active"]
    readonly_fields = ["training_image_uri"]
    fields = [*AlgorithmForm.Meta.fields, "image", "training_image_uri"]


class StepInline(admin.TabularInline):
    model = BuildStep
    extra = 0


class TransitionInline(admin.TabularInline):
    model = BuildTransition
    extra = 0


@admin.register(Build)
class BuildAdmin(admin.ModelAdmin):
    list_display = ["code", "tenant", "plan", "algorithm", "status", "created_at"]
    list_filter = ["status", "plan", "algorithm"]
    list_select_related = ["tenant", "plan", "algorithm"]
    search_fields = ["code", "tenant__slug", "dataset_key"]
    inlines = [StepInline, TransitionInline]


admin.site.register(ModelVersion)
admin.site.register(RejectedUpload)
