"""`manage.py billing_setup [--activate]`: cost allocation tags, Cost Explorer and Marketplace readiness."""

from __future__ import annotations

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = ("Show whether the tenant and plan tag keys are active cost allocation tags, Cost Explorer access, "
            "the last sync and the AWS Marketplace product, each with what to do; --activate activates the tags.")

    def add_arguments(self, parser):
        parser.add_argument("--activate", action="store_true", help="Activate inactive tag keys.")

    def handle(self, *args, **options):
        from billing.setup import billing_setup_check, billing_setup_items

        check = billing_setup_check(activate=options["activate"])
        if check.activated:
            self.stdout.write(f"activated: {', '.join(check.activated)}")
        items = billing_setup_items(check)
        for item in items:
            mark = "ok  " if item.ready else "TODO"
            self.stdout.write(f"{mark} {item.name}: {item.state}")
            if item.todo:
                self.stdout.write(f"     -> {item.todo}")
        if not all(item.ready for item in items):
            self.stdout.write("not ready: see the TODO lines")
