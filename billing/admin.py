from django.contrib import admin

from billing.models import BudgetAlert, CostLine, CostSyncRun, DailyCost, InstancePrice


@admin.register(InstancePrice)
class InstancePriceAdmin(admin.ModelAdmin):
    list_display = ["instance_type", "region", "price_per_hour"]
    list_editable = ["price_per_hour"]


@admin.register(CostLine)
class CostLineAdmin(admin.ModelAdmin):
    list_display = ["day", "tenant", "build", "endpoint_name", "instance_type", "instance_count", "billable_seconds",
                    "amount"]
    list_filter = ["day"]
    list_select_related = ["tenant", "build"]


@admin.register(DailyCost)
class DailyCostAdmin(admin.ModelAdmin):
    list_display = ["day", "tenant_slug", "service", "amount", "estimated", "synced_at"]
    list_filter = ["estimated", "day"]
    search_fields = ["tenant_slug", "service"]


@admin.register(CostSyncRun)
class CostSyncRunAdmin(admin.ModelAdmin):
    list_display = ["started_at", "status", "start_day", "end_day", "requests", "rows", "last_final_day",
                    "triggered_by"]
    list_filter = ["status"]


@admin.register(BudgetAlert)
class BudgetAlertAdmin(admin.ModelAdmin):
    list_display = ["tenant", "month", "threshold_amount", "spend_at_crossing", "crossed_at"]
    list_select_related = ["tenant"]
