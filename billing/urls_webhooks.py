from __future__ import annotations

from django.urls import path

from billing.views import webhooks

app_name = "webhooks"

urlpatterns = [
    path("stripe/<uuid:tenant_id>/", webhooks.stripe_webhook, name="stripe"),
]
