from __future__ import annotations

from django.urls import path

from security import session_views as views

app_name = "sessions"

urlpatterns = [
    path("", views.sessions_list, name="list"),
    path("end-others/", views.sessions_end_others, name="end-others"),
    path("<uuid:session_id>/end/", views.session_end, name="end"),
]
