from django.urls import path

from builds import views

app_name = "builds"
urlpatterns = [
    path("", views.build_list, name="list"),
    path("algorithms/", views.algorithms, name="algorithms"),
    path("algorithms/new/", views.algorithm_edit, name="algorithm_new"),
    path("algorithms/<slug:slug>/edit/", views.algorithm_edit, name="algorithm_edit"),
    path("queue/", views.queue, name="queue"),
    path("upload/<slug:slug>/", views.upload, name="upload"),
    path("upload/<slug:slug>/presign/", views.presign, name="presign"),
    path("upload/<slug:slug>/status/", views.upload_status, name="upload_status"),
    path("models/<slug:slug>/", views.models, name="models"),
    path("models/<slug:slug>/compare/", views.model_compare, name="model_compare"),
    path("models/<slug:slug>/<int:version>/", views.model_detail, name="model_detail"),
    path("models/<slug:slug>/<int:version>/decide/", views.model_decide, name="model_decide"),
    path("models/<slug:slug>/<int:version>/download/", views.model_download, name="model_download"),
    path("endpoints/<slug:slug>/", views.endpoints, name="endpoints"),
    path("endpoints/<slug:slug>/deploy/", views.endpoint_deploy, name="endpoint_deploy"),
    path("endpoints/<slug:slug>/<slug:name>/delete/", views.endpoint_delete, name="endpoint_delete"),
    path("endpoints/<slug:slug>/<slug:name>/score/", views.endpoint_score, name="endpoint_score"),
    path("batch/<slug:slug>/", views.batch_jobs, name="batch_jobs"),
    path("batch/<slug:slug>/new/", views.batch_job_new, name="batch_job_new"),
    path("batch/<slug:slug>/<uuid:code>/", views.batch_job_detail, name="batch_job_detail"),
    path("batch/<slug:slug>/<uuid:code>/start/", views.batch_job_start, name="batch_job_start"),
    path("batch/<slug:slug>/<uuid:code>/download/", views.batch_job_download, name="batch_job_download"),
    path("<uuid:code>/", views.build_detail, name="detail"),
    path("<uuid:code>/cancel/", views.build_cancel, name="cancel"),
    path("<uuid:code>/retry/", views.build_retry, name="retry"),
]
