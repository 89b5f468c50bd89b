from django.urls import path

from billing import views

app_name = "billing"
urlpatterns = [
    path("", views.overview, name="overview"),
    path("prices/", views.prices, name="prices"),
    path("tenants/<slug:slug>/", views.tenant, name="tenant"),
]
