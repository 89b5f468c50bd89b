"""The intake queue and the ledger table are created by `platform_bootstrap`, not per tenant."""

from django.db import migrations


def drop_shared_steps(apps, schema_editor):
    apps.get_model("tenants", "ProvisioningStep").objects.filter(name__in=["intake_queue", "ledger_table"]).delete()


class Migration(migrations.Migration):
    dependencies = [("tenants", "0002_access_request_limits")]
    operations = [migrations.RunPython(drop_shared_steps, migrations.RunPython.noop)]
