"""manage.py measure_algorithms [--algorithm SLUG ...]: typical metrics of each algorithm on the samples."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from builds.measurement import algorithms_measure
from builds.models import Algorithm


class Command(BaseCommand):
    help = ("Train each active algorithm on the bundled sample dataset(s) of its problem type with the build "
            "pipeline's steps, and store the held-out metrics shown in the service catalog.")

    def add_arguments(self, parser):
        parser.add_argument("--algorithm", action="append", dest="slugs", metavar="SLUG",
                            help="Measure only this algorithm (repeatable).")

    def handle(self, *args, slugs=None, **options):
        if slugs:
            unknown = sorted(set(slugs) - set(Algorithm.objects.filter(slug__in=slugs).values_list("slug", flat=True)))
            if unknown:
                raise CommandError(f"Unknown algorithm(s): {', '.join(unknown)}")
        measured = algorithms_measure(slugs=slugs, progress=lambda line: self.stdout.write(line))
        if not measured:
            raise CommandError("No active algorithms: run manage.py seed_demo first.")
        self.stdout.write(self.style.SUCCESS(f"Measured {len(measured)} algorithm(s)."))
