"""People and their roles at each clinic."""

from __future__ import annotations

import uuid
from typing import Any, ClassVar

from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.contrib.auth.models import PermissionsMixin
from django.db import models
from django.utils import timezone

from portal.tenancy.models import TenantOwnedModel


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def create_user(self, email: str, password: str | None = None, **extra: Any) -> User:
        if not email:
            raise ValueError("a user needs an email address")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_superuser(self, email: str, password: str | None = None, **extra: Any) -> User:
        extra.setdefault("is_staff", True)
        extra.setdefault("is_superuser", True)
        extra.setdefault("is_platform_operator", True)
        return self.create_user(email, password, **extra)


class User(AbstractBaseUser, PermissionsMixin):
    """One account per person, identified by email. Never shared."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    email = models.EmailField(unique=True)
    full_name = models.CharField(max_length=150, blank=True)
    is_active = models.BooleanField(default=True)
    # Django admin access (platform operators only).
    is_staff = models.BooleanField(default=False)
    # Acts above tenants; every cross-tenant act is audited.
    is_platform_operator = models.BooleanField(default=False)
    date_joined = models.DateTimeField(default=timezone.now)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: ClassVar[list[str]] = []

    def __str__(self) -> str:
        return self.email


class Role(models.TextChoices):
    PATIENT = "patient", "Patient"
    FRONT_DESK = "front_desk", "Front desk"
    BILLING_MANAGER = "billing_manager", "Billing manager"
    CLINIC_ADMIN = "clinic_admin", "Clinic admin"
    COMPLIANCE_OFFICER = "compliance_officer", "Compliance officer"


class Membership(TenantOwnedModel):
    """A user's role at one clinic. A person may belong to several clinics."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=32, choices=Role.choices)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "user"], name="membership_one_per_tenant")]

    def __str__(self) -> str:
        return f"{self.user_id}@{self.tenant_id}:{self.role}"


class StaffInvitation(TenantOwnedModel):
    """An invitation to join a clinic's staff in a role (security.invitations).

    The link carries a random token; only its SHA-256 is stored, so the
    table cannot be used to accept an invitation. Single use (accepted_at),
    expiring (expires_at), revocable (revoked_at), bound to its clinic: the
    token is looked up only within the clinic whose host serves the link.
    """

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    email = models.EmailField()
    role = models.CharField(max_length=32, choices=Role.choices)
    token_hash = models.CharField(max_length=64, unique=True)
    invited_by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"invitation {self.public_id} ({self.role})"

    @property
    def is_pending(self) -> bool:
        return self.accepted_at is None and self.revoked_at is None and self.expires_at > timezone.now()


class PasswordReset(models.Model):
    """A staff password-reset link (security.recovery).

    The link carries a random token; only its SHA-256 is stored. Single use
    (used_at), expiring within the hour (expires_at), and revoked when a newer
    link is issued or the password changes another way (revoked_at). Not
    tenant-owned: an account is one person across clinics. `tenant` names
    the clinic whose host the link opens on (None: the platform host).
    """

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="password_resets")
    tenant = models.ForeignKey("portal.Tenant", on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    token_hash = models.CharField(max_length=64, unique=True)
    # Set when a clinic admin or operator sent the link from the team page.
    sent_by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"password reset {self.public_id}"

    @property
    def is_usable(self) -> bool:
        return self.used_at is None and self.revoked_at is None and self.expires_at > timezone.now()


class BreakGlassGrant(TenantOwnedModel):
    """Emergency access of a platform operator to one clinic (security.breakglass).

    Time-boxed (expires_at), with a reason, ended early by ended_at. While a
    grant is live the operator acts in the clinic with the break-glass
    permissions (security.permissions); every act is audited as usual, and
    starting and ending the grant are audited and announced to clinic admins.
    """

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    operator = models.ForeignKey(User, on_delete=models.PROTECT, related_name="+")
    reason = models.TextField(max_length=1000)
    started_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"break-glass {self.public_id}"

    @property
    def is_live(self) -> bool:
        return self.ended_at is None and self.expires_at > timezone.now()


class LockoutCounter(models.Model):
    """Failures counted against one key (an IP, an account, a statement).

    Keys are keyed hashes (security.lockout), so the table holds no
    identifier in clear. Not tenant-owned: an IP's failures count across
    every clinic it tries.
    """

    key = models.CharField(max_length=64, unique=True)
    failures = models.PositiveIntegerField(default=0)
    first_failure_at = models.DateTimeField()
    locked_until = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.key[:12]}… {self.failures}"


class UserSession(models.Model):
    """Index from a user to their server-side sessions (django.contrib.sessions).

    Written on login (security.signals); lets a user list and end their own
    sessions. The session itself is the source of truth: a row whose session
    no longer exists is stale and is ignored (and pruned when listed).
    `public_id` is what pages show and post, never the session key.
    """

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="sessions_index")
    session_key = models.CharField(max_length=40, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    # What the user needs to recognise a session; not identifiers of anyone else.
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=200, blank=True)

    def __str__(self) -> str:
        return f"{self.user_id}:{self.public_id}"


class CspViolation(models.Model):
    """One content-security-policy violation reported by a browser.

    Holds no full URLs: the blocked resource as an origin (or a keyword such
    as "inline"), the page as a path without its query string. Not a
    TenantOwnedModel: reports also arrive on the platform host (tenant None).
    """

    tenant = models.ForeignKey("portal.Tenant", on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    directive = models.CharField(max_length=64)
    blocked = models.CharField(max_length=255, blank=True)
    document_path = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    def __str__(self) -> str:
        return f"{self.directive} {self.blocked}"


# Data keys and rotations live in security.crypto; imported here so Django
# registers them with the security app.
from security.crypto.models import DataKey, KeyRotation  # noqa: E402, F401
