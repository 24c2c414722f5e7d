"""Every view declares its permission, or declares itself public.

Walks the whole URL configuration (through every include), so a view added
anywhere without `require_permission(...)` or `public_view(...)` fails here.
Django admin's own views are excluded: the admin site guards them itself
(platform operators on the platform host, see portal.admin_site).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from django.urls import URLPattern, URLResolver, get_resolver

from security.permissions import PERMISSIONS

# Views guarded by something other than our decorators.
EXCLUDED_APP_NAMES = {"admin"}  # the Django admin site and everything under it
EXCLUDED_CALLBACK_MODULES = ("django.contrib.staticfiles.views",)


def walk(patterns: list[Any], prefix: str = "") -> Iterator[tuple[str, Callable[..., Any]]]:
    """(route, view callable) for every URL pattern, recursively."""
    for entry in patterns:
        if isinstance(entry, URLResolver):
            if entry.app_name in EXCLUDED_APP_NAMES or entry.namespace in EXCLUDED_APP_NAMES:
                continue
            yield from walk(entry.url_patterns, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            yield prefix + str(entry.pattern), entry.callback


def declared_access(view: Callable[..., Any]) -> str | None:
    """'public', the permission name, or None when the view declares nothing."""
    candidates = [view, getattr(view, "view_class", None), getattr(view, "cls", None)]
    for candidate in candidates:
        if candidate is None:
            continue
        if getattr(candidate, "settle_public", None) is True:
            return "public"
        permission = getattr(candidate, "settle_permission", None)
        if isinstance(permission, str) and permission:
            return permission
    return None


def all_views() -> list[tuple[str, Callable[..., Any]]]:
    views = [
        (route, view)
        for route, view in walk(get_resolver("portal.urls").url_patterns)
        if not view.__module__.startswith(EXCLUDED_CALLBACK_MODULES)
    ]
    assert views, "the URL configuration has no views at all"
    return views


def _name(view: Callable[..., Any]) -> str:
    return f"{view.__module__}.{getattr(view, '__qualname__', repr(view))}"


def test_every_view_declares_a_permission_or_is_public():
    undeclared = [f"/{route} -> {_name(view)}" for route, view in all_views() if declared_access(view) is None]
    assert not undeclared, "views without require_permission(...) or public_view(...):\n  " + "\n  ".join(
        sorted(undeclared)
    )


def test_declared_permissions_are_in_the_registry():
    unknown = [
        f"/{route} -> {_name(view)}: {access!r}"
        for route, view in all_views()
        if (access := declared_access(view)) not in (None, "public") and access not in PERMISSIONS
    ]
    assert not unknown, "permissions missing from security.permissions.PERMISSIONS:\n  " + "\n  ".join(unknown)


def test_a_view_is_not_both_public_and_guarded():
    both = [
        f"/{route} -> {_name(view)}"
        for route, view in all_views()
        if getattr(view, "settle_public", None) is True and getattr(view, "settle_permission", None)
    ]
    assert not both


def test_the_walk_sees_nested_includes_and_skips_only_the_admin():
    routes = [route for route, _ in all_views()]
    assert "" in routes, "the root view is walked"
    assert any(route.startswith("staff/") for route in routes), "included URL modules are walked"
    assert not any(route.startswith("admin/") for route in routes)


def test_an_undeclared_view_would_be_caught():
    def naked_view(request: Any) -> None:  # pragma: no cover - never called
        return None

    assert declared_access(naked_view) is None
