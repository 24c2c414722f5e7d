"""The team pages: a clinic's staff, invitations, and the invitee's accept page.

Staff management is for clinic admins (staff.manage; a platform operator
during break-glass holds it too). Objects are fetched by public id within
the request's clinic, before any form is read: another clinic's id is a 404
whatever the body. Refused changes (last admin, oneself) re-render the page
with the reason and status 400; nothing is changed.

The accept page is public on the clinic's host. Its link carries the token;
the first request moves the token's hash into the session and redirects to
the same route with ACCEPT_PLACEHOLDER in place of the token (as Django's
password reset does), so the form page, its error responses and anything
it links to never carry the live token in their URL or Referer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast
from uuid import UUID

from django import forms
from django.contrib import messages
from django.contrib.auth import login as auth_login
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from security.auth_views import locked_out
from security.invitations import (
    STATE_MESSAGES,
    InvitationError,
    InvitationLockedError,
    InvitationLookup,
    InvitationPasswordError,
    InvitationState,
    access_invitation_by_uuid,
    invitation_accept,
    invitation_create,
    invitation_has_account,
    invitation_lookup,
    invitation_lookup_by_hash,
    invitation_revoke,
    invitations_pending,
    token_hash,
)
from security.mfa import mfa_enrolled
from security.models import Membership, User
from security.passwords import MAX_LENGTH as PASSWORD_MAX_LENGTH
from security.permissions import TENANT_HOST, public_view, require_permission
from security.recovery import password_reset_send
from security.roles import role_phrase
from security.team import (
    TeamError,
    access_membership_by_uuid,
    member_deactivate,
    member_mfa_reset,
    member_reactivate,
    member_role_change,
    member_unlock,
    staff_role_choices,
    team_member,
    team_members_page,
)

# The accept route's "token" once the real token has moved into the session.
ACCEPT_PLACEHOLDER = "accept"
INVITATION_SESSION_KEY = "settle_invitation_token_hash"
# The state of a link -> the status of its page.
STATE_STATUS: dict[InvitationState, int] = {
    InvitationState.EXPIRED: 410,
    InvitationState.USED: 410,
    InvitationState.INVALID: 404,
}


# --- Forms ------------------------------------------------------------------------------------


class InviteForm(forms.Form):
    email = forms.EmailField(label="Email address", max_length=254)
    role = forms.ChoiceField(label="Role", choices=staff_role_choices)


class RoleForm(forms.Form):
    role = forms.ChoiceField(label="New role", choices=staff_role_choices)


class NewAccountForm(forms.Form):
    full_name = forms.CharField(
        label="Your full name", max_length=150, widget=forms.TextInput(attrs={"autocomplete": "name"})
    )
    password = forms.CharField(
        label="Choose a password",
        max_length=PASSWORD_MAX_LENGTH,
        strip=False,
        help_text="At least 12 characters with letters and digits, not a common or breached password.",
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )
    password_confirm = forms.CharField(
        label="Type the password again",
        max_length=PASSWORD_MAX_LENGTH,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("password") and cleaned.get("password") != cleaned.get("password_confirm"):
            self.add_error("password_confirm", "The two passwords are not the same.")
        return cleaned


class ExistingAccountForm(forms.Form):
    password = forms.CharField(
        label="Your Settle password",
        max_length=PASSWORD_MAX_LENGTH,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )


# --- Helpers ----------------------------------------------------------------------------------


def _actor(request: HttpRequest) -> tuple[User, str]:
    """The signed-in admin and the role audit events record (require_permission set request.access)."""
    return cast(User, request.user), request.access.role  # type: ignore[attr-defined]


def _team_page(request: HttpRequest, *, invite_form: InviteForm | None = None, status: int = 200) -> HttpResponse:
    tenant = request.tenant  # type: ignore[attr-defined]
    context = {
        "members": team_members_page(tenant=tenant, number=request.GET.get("page")),
        "invitations": invitations_pending(tenant=tenant),
        "invite_form": invite_form or InviteForm(),
    }
    return render(request, "security/team/list.html", context, status=status)


def _member_page(
    request: HttpRequest,
    membership: Membership,
    *,
    role_form: RoleForm | None = None,
    error: str = "",
    status: int = 200,
) -> HttpResponse:
    context = {
        "member": team_member(membership=membership),
        "role_form": role_form or RoleForm(initial={"role": membership.role}),
        "error": error,
        "is_self": membership.user_id == request.user.pk,
    }
    return render(request, "security/team/member.html", context, status=status)


def _member_redirect(membership: Membership) -> HttpResponseRedirect:
    return HttpResponseRedirect(reverse("team:member", kwargs={"membership_id": membership.public_id}))


# --- The team -----------------------------------------------------------------------------------


@require_permission("staff.manage")
@require_GET
def team_list(request: HttpRequest) -> HttpResponse:
    """Members with role, status, MFA and lockout; pending invitations; the invite form."""
    return _team_page(request)


@require_permission("staff.manage")
@require_POST
def invite(request: HttpRequest) -> HttpResponse:
    form = InviteForm(request.POST)
    if not form.is_valid():
        return _team_page(request, invite_form=form, status=400)
    actor, actor_role = _actor(request)
    try:
        invitation = invitation_create(
            tenant=request.tenant,  # type: ignore[attr-defined]
            actor=actor,
            actor_role=actor_role,
            email=form.cleaned_data["email"],
            role=form.cleaned_data["role"],
            request=request,
        )
    except InvitationError as error:
        form.add_error("email", str(error))
        return _team_page(request, invite_form=form, status=400)
    messages.success(request, f"Invitation sent to {invitation.email}. The link works once, for 72 hours.")
    return redirect("team:list")


@require_permission("staff.manage")
@require_POST
def invitation_revoke_view(request: HttpRequest, invitation_id: UUID) -> HttpResponse:
    tenant = request.tenant  # type: ignore[attr-defined]
    invitation = access_invitation_by_uuid(tenant=tenant, uuid=invitation_id)
    actor, actor_role = _actor(request)
    try:
        invitation_revoke(tenant=tenant, actor=actor, actor_role=actor_role, invitation=invitation, request=request)
    except InvitationError as error:
        messages.error(request, str(error))
        return _team_page(request, status=400)
    messages.success(request, f"The invitation for {invitation.email} was revoked; its link no longer works.")
    return redirect("team:list")


# --- One member -----------------------------------------------------------------------------------


@require_permission("staff.manage")
@require_GET
def member(request: HttpRequest, membership_id: UUID) -> HttpResponse:
    membership = access_membership_by_uuid(tenant=request.tenant, uuid=membership_id)  # type: ignore[attr-defined]
    return _member_page(request, membership)


@require_permission("staff.manage")
@require_POST
def member_role(request: HttpRequest, membership_id: UUID) -> HttpResponse:
    tenant = request.tenant  # type: ignore[attr-defined]
    membership = access_membership_by_uuid(tenant=tenant, uuid=membership_id)
    form = RoleForm(request.POST)
    if not form.is_valid():
        return _member_page(request, membership, role_form=form, status=400)
    actor, actor_role = _actor(request)
    role = form.cleaned_data["role"]
    try:
        member_role_change(
            tenant=tenant, actor=actor, actor_role=actor_role, membership=membership, role=role, request=request
        )
    except TeamError as error:
        return _member_page(request, membership, role_form=form, error=str(error), status=400)
    messages.success(request, f"They are now {role_phrase(role)}.")
    return _member_redirect(membership)


def _member_action(
    request: HttpRequest, membership_id: UUID, act: Callable[..., Any], success: Callable[[Any], str]
) -> HttpResponse:
    """Run one team service on the member; its refusal goes back on the member page (400)."""
    tenant = request.tenant  # type: ignore[attr-defined]
    membership = access_membership_by_uuid(tenant=tenant, uuid=membership_id)
    actor, actor_role = _actor(request)
    try:
        result = act(tenant=tenant, actor=actor, actor_role=actor_role, membership=membership, request=request)
    except TeamError as error:
        return _member_page(request, membership, error=str(error), status=400)
    messages.success(request, success(result))
    return _member_redirect(membership)


@require_permission("staff.manage")
@require_POST
def member_deactivate_view(request: HttpRequest, membership_id: UUID) -> HttpResponse:
    return _member_action(
        request,
        membership_id,
        member_deactivate,
        lambda ended: f"Deactivated. {ended} signed-in session{'' if ended == 1 else 's'} ended.",
    )


@require_permission("staff.manage")
@require_POST
def member_reactivate_view(request: HttpRequest, membership_id: UUID) -> HttpResponse:
    return _member_action(
        request, membership_id, member_reactivate, lambda _: "Reactivated: they can sign in to this clinic again."
    )


@require_permission("staff.manage")
@require_POST
def member_mfa_reset_view(request: HttpRequest, membership_id: UUID) -> HttpResponse:
    return _member_action(
        request,
        membership_id,
        member_mfa_reset,
        lambda _: "The authenticator was removed and they were signed out. They will set up a new one at next sign-in.",
    )


@require_permission("staff.manage")
@require_POST
def member_unlock_view(request: HttpRequest, membership_id: UUID) -> HttpResponse:
    return _member_action(request, membership_id, member_unlock, lambda _: "Unlocked: they can sign in again.")


@require_permission("staff.manage")
@require_POST
def member_password_reset_view(request: HttpRequest, membership_id: UUID) -> HttpResponse:
    return _member_action(
        request,
        membership_id,
        password_reset_send,
        lambda _: "A password reset link was emailed to them. It works once, for one hour.",
    )


# --- The invitee's page -----------------------------------------------------------------------------


def _problem(request: HttpRequest, state: InvitationState) -> HttpResponse:
    request.session.pop(INVITATION_SESSION_KEY, None)
    context = {"state": state.value, "message": STATE_MESSAGES[state]}
    return render(request, "security/team/invitation_problem.html", context, status=STATE_STATUS[state])


def _session_lookup(request: HttpRequest) -> InvitationLookup:
    hashed = request.session.get(INVITATION_SESSION_KEY)
    if not isinstance(hashed, str):
        return InvitationLookup(state=InvitationState.INVALID, invitation=None)
    return invitation_lookup_by_hash(tenant=request.tenant, hashed=hashed)  # type: ignore[attr-defined]


def _after_accept(request: HttpRequest, user: User) -> HttpResponseRedirect:
    """Sign the new member in (password step done) and send them to their second factor."""
    request.session.pop(INVITATION_SESSION_KEY, None)
    auth_login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    step = "staff:mfa" if mfa_enrolled(user) else "staff:mfa-enrol"
    return HttpResponseRedirect(reverse(step))


@public_view(host=TENANT_HOST)
@sensitive_post_parameters("password", "password_confirm")
@never_cache
@require_http_methods(["GET", "POST"])
def accept(request: HttpRequest, token: str) -> HttpResponse:
    """Accept an invitation: a new account (name and password) or an existing one (its password)."""
    if token != ACCEPT_PLACEHOLDER:
        lookup = invitation_lookup(tenant=request.tenant, token=token)  # type: ignore[attr-defined]
        if lookup.invitation is None:
            return _problem(request, lookup.state)
        request.session[INVITATION_SESSION_KEY] = token_hash(token)
        return HttpResponseRedirect(reverse("team:accept", kwargs={"token": ACCEPT_PLACEHOLDER}))
    lookup = _session_lookup(request)
    invitation = lookup.invitation
    if invitation is None:
        return _problem(request, lookup.state)
    has_account = invitation_has_account(invitation=invitation)
    form: forms.Form = (ExistingAccountForm if has_account else NewAccountForm)(
        request.POST if request.method == "POST" else None
    )
    status = 200
    if request.method == "POST":
        status = 400
        if form.is_valid():
            try:
                acceptance = invitation_accept(
                    request=request,
                    tenant=request.tenant,  # type: ignore[attr-defined]
                    invitation=invitation,
                    password=form.cleaned_data["password"],
                    full_name=form.cleaned_data.get("full_name", ""),
                )
            except InvitationLockedError:
                return locked_out(request)
            except InvitationPasswordError as error:
                form.add_error("password", str(error))
            except ValidationError as error:
                form.add_error("password", error)
            except InvitationError as error:
                form.add_error(None, str(error))
            else:
                return _after_accept(request, acceptance.user)
    context = {
        "invitation": invitation,
        "role_phrase": role_phrase(invitation.role),
        "has_account": has_account,
        "form": form,
    }
    return render(request, "security/team/accept.html", context, status=status)
