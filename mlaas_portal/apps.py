from django.apps import AppConfig


class MlaasPortalConfig(AppConfig):
    name = "mlaas_portal"

    def ready(self) -> None:
        # The roof wires the apps together where a lower one shows what a higher one knows.
        from billing.selectors import builds_cost_so_far
        from builds.costs import cost_reader_register

        cost_reader_register(builds_cost_so_far)
