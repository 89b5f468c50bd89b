from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from mlaas_portal import views
from mlaas_portal.api import api
from tenants import views as tenant_views

urlpatterns = [
    path("", views.home, name="home"),
    path("catalog/", views.catalog, name="catalog"),
    path("marketplace/register", tenant_views.marketplace_register, name="marketplace_register"),
    path("marketplace/register/<uuid:code>/", tenant_views.marketplace_details, name="marketplace_details"),
    path("tokens/", views.tokens, name="tokens"),
    path("healthz", views.healthz, name="healthz"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("reset/<uidb64>/<token>/", auth_views.PasswordResetConfirmView.as_view(), name="password_reset_confirm"),
    path("reset/done/", auth_views.PasswordResetCompleteView.as_view(), name="password_reset_complete"),
    path("tenants/", views.tenant_list, name="tenant_list"),  # combines apps: lives in the roof
    path("tenants/", include("tenants.urls")),
    path("builds/", include("builds.urls")),
    path("billing/", include("billing.urls")),
    path("admin/rq/", include("django_rq.urls")),
    path("admin/", admin.site.urls),
    path("api/v1/", api.urls),
]
