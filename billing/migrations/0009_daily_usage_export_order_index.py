"""PostgreSQL: an index in the costs CSV's order (day, the untagged row last, tenant slug in code point order), so
the export reads the rollup in order instead of sorting a month of every tenant's days (47 -> 23 ms for 30,000
rows, EXPLAIN ANALYZE in docs/PERFORMANCE.md). The portable path (SQLite) sorts in Python and needs none."""

from django.db import migrations

CREATE = ('CREATE INDEX IF NOT EXISTS daily_usage_export_order ON billing_dailyusage '
          '(day, (tenant_slug = \'\'), (tenant_slug COLLATE "C"))')
DROP = "DROP INDEX IF EXISTS daily_usage_export_order"


def _on_postgres(sql):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql)
    return run


class Migration(migrations.Migration):
    dependencies = [("billing", "0008_daily_usage_gap_index")]

    operations = [migrations.RunPython(_on_postgres(CREATE), _on_postgres(DROP))]
