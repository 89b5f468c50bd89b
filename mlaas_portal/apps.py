from django.apps import AppConfig


class MlaasPortalConfig(AppConfig):
    name = "mlaas_portal"

    def ready(self) -> None:
        # The roof wires the apps together where a lower one shows what a higher one knows.
        from billing.selectors import builds_cost_estimate, builds_cost_so_far, instance_types_without_price
        from builds.costs import cost_estimator_register, cost_reader_register
        from tenants.sizing import price_check_register

        cost_reader_register(builds_cost_so_far)
        cost_estimator_register(builds_cost_estimate)
        price_check_register(instance_types_without_price)
