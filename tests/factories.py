"""factory_boy factories for the standard test world.

Rows go through the services where one exists (tenant_create, patient_create,
statement_issue, processor_account_set), so tests build data the way the
product does. Tenant-owned rows are created inside tenant_scope(tenant): the
scoped manager refuses them otherwise.

Passwords: every persona shares PERSONA_PASSWORD. Argon2 is deliberately slow,
so the hash is computed once per process and reused (a salted Argon2 hash is
valid for any number of accounts); tests that log in with the password still
exercise the real hasher.
"""

from __future__ import annotations

import datetime
import functools
import re
from typing import Any

import factory
from django.contrib.auth.hashers import make_password
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from billing.models import Patient, ProcessorAccount, Statement
from billing.services.processor_accounts import processor_account_set
from billing.services.statements import patient_create, statement_issue
from portal.models import Tenant
from portal.services import tenant_create
from portal.tenancy.context import tenant_scope
from security.models import Membership, Role, User

PERSONA_PASSWORD = "correct-horse-battery-staple-42"


@functools.cache
def persona_password_hash() -> str:
    return make_password(PERSONA_PASSWORD)


class TenantFactory(factory.Factory[Tenant]):
    class Meta:
        model = Tenant

    slug = factory.Sequence(lambda n: f"clinic{n:03d}")
    name = factory.LazyAttribute(lambda o: f"{o.slug.title()} Clinic")
    currency = "USD"
    timezone = "America/New_York"
    minimum_payment_minor = 100

    @classmethod
    def _create(cls, model_class: type[Tenant], *args: Any, **kwargs: Any) -> Tenant:
        return tenant_create(**kwargs)


class UserFactory(factory.django.DjangoModelFactory[User]):
    class Meta:
        model = User
        django_get_or_create = ("email",)

    email = factory.Sequence(lambda n: f"person{n}@example.com")
    full_name = factory.Faker("name")
    password = factory.LazyFunction(persona_password_hash)
    is_active = True


def totp_device(user: User) -> TOTPDevice:
    """The user's confirmed authenticator, created on first use (as if enrolled)."""
    device = TOTPDevice.objects.filter(user=user, confirmed=True).first()
    if device is None:
        device = TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=True)
    return device


# A recovery code as the recovery-codes page lists it.
RECOVERY_CODE = re.compile(r"<li>([a-z2-9]{5}-[a-z2-9]{5})</li>")


def totp_code(device: TOTPDevice, *, at: float | None = None) -> str:
    """The code the user's app would show now (or at unix time `at`)."""
    generator = TOTP(device.bin_key, device.step, device.t0, device.digits, 0)
    if at is not None:
        generator.time = at
    return str(generator.token()).zfill(device.digits)


class MembershipFactory(factory.Factory[Membership]):
    class Meta:
        model = Membership

    tenant = factory.SubFactory(TenantFactory)
    user = factory.SubFactory(UserFactory)
    role = Role.FRONT_DESK
    is_active = True

    @classmethod
    def _create(cls, model_class: type[Membership], *args: Any, **kwargs: Any) -> Membership:
        with tenant_scope(kwargs["tenant"]):
            membership = model_class(**kwargs)
            membership.save()
        return membership


class ProcessorAccountFactory(factory.Factory[ProcessorAccount]):
    class Meta:
        model = ProcessorAccount

    tenant = factory.SubFactory(TenantFactory)
    publishable_key = factory.LazyAttribute(lambda o: f"pk_test_{o.tenant.slug}")
    secret_key = factory.LazyAttribute(lambda o: f"sk_test_{o.tenant.slug}")
    webhook_secret = factory.LazyAttribute(lambda o: f"whsec_{o.tenant.slug}")

    @classmethod
    def _create(cls, model_class: type[ProcessorAccount], *args: Any, **kwargs: Any) -> ProcessorAccount:
        with tenant_scope(kwargs["tenant"]):
            return processor_account_set(**kwargs)


class PatientFactory(factory.Factory[Patient]):
    class Meta:
        model = Patient

    tenant = factory.SubFactory(TenantFactory)
    account_number = factory.Sequence(lambda n: f"ACC-{n:05d}")
    first_name = factory.Faker("first_name")
    last_name = factory.Faker("last_name")
    date_of_birth = datetime.date(1984, 2, 29)

    @classmethod
    def _create(cls, model_class: type[Patient], *args: Any, **kwargs: Any) -> Patient:
        with tenant_scope(kwargs["tenant"]):
            return patient_create(**kwargs)


class StatementFactory(factory.Factory[Statement]):
    """A statement issued through statement_issue: it also charges the ledger."""

    class Meta:
        model = Statement

    patient = factory.SubFactory(PatientFactory)
    tenant = factory.LazyAttribute(lambda o: o.patient.tenant)
    number = factory.Sequence(lambda n: f"ST-{1000 + n}")
    statement_date = datetime.date(2026, 11, 1)
    due_date = datetime.date(2026, 12, 1)
    amount_due_minor = 12_500
    summary = "Office visit"

    @classmethod
    def _create(cls, model_class: type[Statement], *args: Any, **kwargs: Any) -> Statement:
        with tenant_scope(kwargs["tenant"]):
            return statement_issue(**kwargs)
