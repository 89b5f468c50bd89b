from django.urls import path

from builds import views

app_name = "builds"
urlpatterns = [
    path("", views.build_list, name="list"),
    path("algorithms/", views.algorithms, name="algorithms"),
    path("queue/", views.queue, name="queue"),
    path("upload/<slug:slug>/", views.upload, name="upload"),
    path("upload/<slug:slug>/presign/", views.presign, name="presign"),
    path("upload/<slug:slug>/status/", views.upload_status, name="upload_status"),
    path("models/<slug:slug>/", views.models, name="models"),
    path("models/<slug:slug>/<int:version>/decide/", views.model_decide, name="model_decide"),
    path("models/<slug:slug>/<int:version>/download/", views.model_download, name="model_download"),
    path("<uuid:code>/", views.build_detail, name="detail"),
    path("<uuid:code>/cancel/", views.build_cancel, name="cancel"),
    path("<uuid:code>/retry/", views.build_retry, name="retry"),
]
