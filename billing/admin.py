from django.contrib import admin

from billing.models import BudgetAlert, CostLine, CostSyncRun, DailyCost, InstancePrice


@admin.register(InstancePrice)
class InstancePriceAdmin(admin.ModelAdmin):
    list_display = ["instance_type", "region", "price_per_hour"]
    list_editable = ["price_per_hour"]


admin.site.register(CostLine)
admin.site.register(DailyCost)
admin.site.register(CostSyncRun)
admin.site.register(BudgetAlert)
