from django.urls import path

from tenants import views

app_name = "tenants"
urlpatterns = [
    path("new/", views.tenant_onboard, name="onboard"),
    path("plans/", views.plan_list, name="plans"),
    path("plans/<slug:slug>/", views.plan_edit, name="plan_edit"),
    path("scheduling/", views.scheduling_policy_edit, name="scheduling"),
    path("autocomplete/", views.tenant_autocomplete, name="autocomplete"),
    path("requests/", views.access_requests, name="access_requests"),
    path("requests/<uuid:code>/done/", views.access_request_done, name="access_request_done"),
    path("<slug:slug>/", views.tenant_detail, name="detail"),
    path("<slug:slug>/steps/", views.tenant_steps, name="steps"),
    path("<slug:slug>/offboard/", views.tenant_offboard, name="offboard"),
    path("<slug:slug>/invite/", views.tenant_invite, name="invite"),
    path("<slug:slug>/settings/", views.tenant_settings, name="settings"),
    path("<slug:slug>/credentials/", views.tenant_credentials, name="credentials"),
    path("<slug:slug>/fair-share/", views.tenant_fair_share, name="fair_share"),
    path("<slug:slug>/webhooks/", views.tenant_webhooks, name="webhooks"),
    path("<slug:slug>/webhooks/<uuid:code>/", views.tenant_webhook_deliveries, name="webhook_deliveries"),
    path("<slug:slug>/webhooks/<uuid:code>/<str:action>/", views.tenant_webhook_action, name="webhook_action"),
    path("<slug:slug>/webhooks/<uuid:code>/deliveries/<uuid:delivery>/resend/", views.tenant_webhook_resend,
         name="webhook_resend"),
    path("<slug:slug>/<str:action>/", views.tenant_action, name="action"),
]
