from __future__ import annotations

from django.urls import path

from security import views

app_name = "keys"

urlpatterns = [
    path("", views.keys, name="keys"),
    path("rotate/", views.rotate, name="rotate"),
    path("rotations/<uuid:rotation_id>/", views.rotation_detail, name="rotation"),
]
