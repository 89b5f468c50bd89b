from __future__ import annotations

from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError

from tenants.services import api_token_create


class Command(BaseCommand):
    help = "Print a new bearer token for /api/v1/ acting as USERNAME."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="cli")

    def handle(self, *args, **options):
        user = User.objects.filter(username=options["username"], is_active=True).first()
        if user is None:
            raise CommandError(f"no active user `{options['username']}`")
        self.stdout.write(api_token_create(user=user, name=options["name"]))
