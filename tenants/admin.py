from django.contrib import admin

from tenants.models import (
    AccessRequest,
    ApiToken,
    Membership,
    Plan,
    ProvisioningStep,
    SchedulingPolicy,
    Tenant,
    TenantEvent,
)


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "tier_rank", "plan_concurrent_limit", "tenant_concurrent_limit",
                    "borrowing_limit", "monthly_fee"]


class ProvisioningStepInline(admin.TabularInline):
    model = ProvisioningStep
    extra = 0
    readonly_fields = ["name", "order", "status", "resource_arn", "error", "attempts", "started_at", "ended_at"]


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "plan", "isolation", "status", "created_at"]
    list_filter = ["status", "isolation", "plan"]
    search_fields = ["slug", "name", "owner_email"]
    list_select_related = ["plan"]
    inlines = [ProvisioningStepInline]
    readonly_fields = ["metered_spend_month", "metered_spend"]  # recorded by billing, read by the budget cap

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if change and "fair_share_weight" in form.changed_data:
            from tenants.services import tenant_set_fair_share_weight

            # the stored ordering key follows the weight (a plain save would leave it stale)
            tenant_set_fair_share_weight(tenant=obj, weight=obj.fair_share_weight, actor=request.user)


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "tenant", "role"]
    list_select_related = ["user", "tenant"]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["user", "name", "prefix", "created_at", "last_used_at"]
    readonly_fields = ["key_hash", "prefix"]


admin.site.register(TenantEvent)
admin.site.register(AccessRequest)


@admin.register(SchedulingPolicy)
class SchedulingPolicyAdmin(admin.ModelAdmin):
    """Staff set the fair-share half-life and the new-tenant reservation; the service rescales stored usage."""

    list_display = ["__str__", "usage_half_life_hours", "new_tenant_reserved_share", "updated_at"]

    def save_model(self, request, obj, form, change):
        from tenants.services import scheduling_policy_update

        saved = scheduling_policy_update(usage_half_life_hours=obj.usage_half_life_hours,
                                         new_tenant_reserved_share=obj.new_tenant_reserved_share, actor=request.user)
        obj.pk = saved.pk
