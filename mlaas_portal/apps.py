from django.apps import AppConfig


class MlaasPortalConfig(AppConfig):
    name = "mlaas_portal"
