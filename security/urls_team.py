"""The team pages (namespace "team", mounted at /staff/team/): staff management and invitations."""

from __future__ import annotations

from django.urls import path

from security import team_views as views

app_name = "team"

urlpatterns = [
    path("", views.team_list, name="list"),
    path("invite/", views.invite, name="invite"),
    path("invitations/<uuid:invitation_id>/revoke/", views.invitation_revoke_view, name="invitation-revoke"),
    # Public: the invitee's page. <token> is the link's token, or views.ACCEPT_PLACEHOLDER.
    path("invitations/<str:token>/", views.accept, name="accept"),
    path("members/<uuid:membership_id>/", views.member, name="member"),
    path("members/<uuid:membership_id>/role/", views.member_role, name="member-role"),
    path("members/<uuid:membership_id>/deactivate/", views.member_deactivate_view, name="member-deactivate"),
    path("members/<uuid:membership_id>/reactivate/", views.member_reactivate_view, name="member-reactivate"),
    path("members/<uuid:membership_id>/mfa-reset/", views.member_mfa_reset_view, name="member-mfa-reset"),
    path("members/<uuid:membership_id>/unlock/", views.member_unlock_view, name="member-unlock"),
    path(
        "members/<uuid:membership_id>/password-reset/", views.member_password_reset_view, name="member-password-reset"
    ),
]
