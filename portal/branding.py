"""Per-clinic branding served as files, so pages need no inline styles (CSP)."""

from __future__ import annotations

from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.views.decorators.http import require_GET

from portal.models import Tenant
from security.caching import cacheable_asset
from security.permissions import TENANT_HOST, public_view

_IMAGE_SIGNATURES = {
    b"\x89PNG\r\n\x1a\n": "image/png",
    b"\xff\xd8\xff": "image/jpeg",
}


@cacheable_asset
@public_view(host=TENANT_HOST)
@require_GET
def branding_css(request: HttpRequest) -> HttpResponse:
    tenant: Tenant = request.tenant  # type: ignore[attr-defined]
    # brand_colour is validated as #rrggbb, so it is safe inside CSS.
    css = f":root {{ --brand: {tenant.brand_colour}; }}\n"
    response = HttpResponse(css, content_type="text/css")
    response["Cache-Control"] = "public, max-age=300"
    return response


@cacheable_asset
@public_view(host=TENANT_HOST)
@require_GET
def branding_logo(request: HttpRequest) -> HttpResponseBase:
    tenant: Tenant = request.tenant  # type: ignore[attr-defined]
    if not tenant.logo:
        raise Http404
    handle = tenant.logo.open("rb")
    head = handle.read(8)
    handle.seek(0)
    content_type = next((ct for sig, ct in _IMAGE_SIGNATURES.items() if head.startswith(sig)), None)
    if content_type is None:
        # Only raster images we recognise; never serve SVG or HTML as a logo.
        handle.close()
        raise Http404
    response = FileResponse(handle, content_type=content_type)
    response["Cache-Control"] = "public, max-age=300"
    return response
