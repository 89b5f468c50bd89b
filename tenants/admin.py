from django.contrib import admin

from tenants.models import AccessRequest, ApiToken, Membership, Plan, ProvisioningStep, Tenant, TenantEvent


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "tier_rank", "plan_concurrent_limit", "tenant_concurrent_limit", "monthly_fee"]


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
