from django.urls import path

from billing import views

app_name = "billing"
urlpatterns = [
    path("", views.overview, name="overview"),
    path("sync/", views.sync, name="sync"),
    path("prices/", views.prices, name="prices"),
    path("setup/", views.setup, name="setup"),
    path("marketplace/", views.marketplace, name="marketplace"),
    path("costs.csv", views.export_costs_all, name="export_costs_all"),
    path("statements.csv", views.export_statements_all, name="export_statements_all"),
    path("tenants/<slug:slug>/", views.tenant, name="tenant"),
    path("tenants/<slug:slug>/statement/", views.statement, name="statement"),
    path("tenants/<slug:slug>/costs.csv", views.export_costs, name="export_costs"),
    path("tenants/<slug:slug>/statement.csv", views.export_statement, name="export_statement"),
]
