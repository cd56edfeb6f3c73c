from django.contrib import admin
from django.urls import include, path

from example_project.shop import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("jobs/api/", include("django_jobs.api.urls")),
    path("signup/", views.signup, name="signup"),
]
