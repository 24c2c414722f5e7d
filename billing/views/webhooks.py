"""Processor webhook endpoint, one URL per clinic, on the platform host."""

from __future__ import annotations

from uuid import UUID

from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from billing.processor import WebhookRejected
from billing.services.webhooks import WebhookRetryLater, webhook_receive
from portal.models import Tenant
from portal.tenancy.context import tenant_scope
from security.permissions import PLATFORM_HOST, public_view
from security.textinput import raw_json_is_storable

MAX_WEBHOOK_BYTES = 256 * 1024


# CSRF-exempt because the Stripe-Signature on the raw body authenticates it
# (the only kind of exemption SECURITY.md allows).
@csrf_exempt
@public_view(host=PLATFORM_HOST)
@require_POST
def stripe_webhook(request: HttpRequest, tenant_id: UUID) -> HttpResponse:
    tenant = Tenant.objects.filter(public_id=tenant_id, is_active=True).first()
    if tenant is None:
        raise Http404
    payload = request.body
    if len(payload) > MAX_WEBHOOK_BYTES:
        return JsonResponse({"error": "payload too large"}, status=400)
    if not raw_json_is_storable(payload):
        # A NUL or a lone surrogate could not be stored with the event (a 500);
        # the processor never sends one, so it is refused like a bad payload.
        return JsonResponse({"error": "invalid signature or payload"}, status=400)
    with tenant_scope(tenant):
        try:
            result = webhook_receive(
                tenant=tenant, payload=payload, signature_header=request.headers.get("Stripe-Signature", "")
            )
        except WebhookRejected:
            return JsonResponse({"error": "invalid signature or payload"}, status=400)
        except WebhookRetryLater:
            return JsonResponse({"error": "try again later"}, status=503)
    return JsonResponse({"outcome": result.outcome})
