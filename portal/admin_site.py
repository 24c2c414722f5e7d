"""Django admin for platform operators only, on the platform host only."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.admin import AdminSite
from django.contrib.admin.apps import AdminConfig
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.http import urlencode


class PlatformAdminSite(AdminSite):
    site_header = "Settle platform administration"
    site_title = "Settle platform"

    def has_permission(self, request: HttpRequest) -> bool:
        # A second factor is required here as on every staff page.
        from security.permissions import user_is_verified

        user = request.user
        return bool(
            user.is_active and user.is_staff and getattr(user, "is_platform_operator", False) and user_is_verified(user)
        )

    def login(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        """One sign-in for everyone: password, then the second factor (security.auth_views)."""
        from security.permissions import user_is_verified

        next_url = request.GET.get(REDIRECT_FIELD_NAME) or reverse("admin:index", current_app=self.name)
        if request.user.is_authenticated:
            if user_is_verified(request.user):
                # Fully signed in, yet not a platform operator: no admin for them.
                raise PermissionDenied
            return HttpResponseRedirect(f"{reverse('staff:mfa')}?{urlencode({'next': next_url})}")
        return HttpResponseRedirect(f"{reverse('staff:login')}?{urlencode({'next': next_url})}")

    def admin_view(self, view: Any, cacheable: bool = False) -> Any:
        # Model pages go through admin_view; get_urls below covers the rest.
        return _platform_only(super().admin_view(view, cacheable))

    def get_urls(self) -> list[Any]:
        # A clinic's host never serves the admin, not even its login page.
        urls = super().get_urls()
        for pattern in urls:
            callback = getattr(pattern, "callback", None)
            if callback is not None and not getattr(callback, "settle_platform_only", False):
                pattern.callback = _platform_only(callback)
        return urls


def _platform_only(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not getattr(request, "is_platform_host", False):
            raise Http404
        return view(request, *args, **kwargs)

    wrapped.settle_platform_only = True  # type: ignore[attr-defined]
    return wrapped


class PlatformAdminConfig(AdminConfig):
    default_site = "portal.admin_site.PlatformAdminSite"
