"""The demo data set: two clinics, their staff, patients and statements.

A plain module so that `manage.py seed_demo`, the development stack
(`python -m portal.devstack`) and tests build the same data. Everything here
is fictional: patient names are obviously made up, phone numbers are in the
555-01xx range reserved for fiction and emails are at example.com.

`demo_seed` is idempotent: each object is looked up by its natural key
(tenant slug, user email, patient account number, statement number) and
created only when missing, so a second run changes nothing and reports the
same facts. It refuses to run in production.
"""

from __future__ import annotations

import datetime
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.db import transaction
from django.utils import timezone

from audit.models import Outcome
from audit.recorder import audit_record
from billing.models import CardCheckPolicy, Patient, ProcessorAccount, Statement
from billing.services.ledger import statement_balance
from billing.services.processor_accounts import processor_account_set
from billing.services.statements import patient_create, statement_issue
from portal.models import Tenant
from portal.money import Money
from portal.services import tenant_create
from portal.tenancy.context import platform_scope, tenant_scope
from portal.tenancy.resolution import platform_url, tenant_base_url
from security.crypto.fields import blind_index_filter
from security.models import Membership, Role, User

# Development only: printed by seed_demo and make run. 16 characters with
# letters and digits (PCI DSS 8.3.6); checked against the password validators
# for every user it is given to. demo_seed refuses to run in production.
DEMO_PASSWORD = "settle-demo-2025"  # noqa: S105  # nosec B105
OPERATOR_EMAIL = "operator@settle.localhost"


class DemoSeedRefused(RuntimeError):
    """demo_seed was asked to run where demo data must never exist."""


# --- The data set -------------------------------------------------------------------


@dataclass(frozen=True)
class DemoStatement:
    number: str  # as printed on paper; looked up by its normalised form ("DC-100234" -> "DC100234")
    amount_due_minor: int
    issued_days_ago: int
    summary: str


@dataclass(frozen=True)
class DemoPatient:
    account_number: str
    first_name: str
    last_name: str
    date_of_birth: datetime.date
    email: str
    phone: str
    statements: tuple[DemoStatement, ...]


@dataclass(frozen=True)
class DemoStaff:
    email: str
    full_name: str
    role: Role


@dataclass(frozen=True)
class DemoClinic:
    slug: str
    name: str
    brand_colour: str
    timezone: str
    currency: str
    minimum_payment_minor: int
    support_phone: str
    support_email: str
    card_check_policy: str
    staff: tuple[DemoStaff, ...]
    patients: tuple[DemoPatient, ...]
    # The clinic's profile (portal.models.Tenant): the look-up form's example
    # statement number and the postal address printed on receipts.
    statement_number_hint: str = ""
    address_line1: str = ""
    address_line2: str = ""
    city: str = ""
    state: str = ""
    postal_code: str = ""

    @property
    def publishable_key(self) -> str:
        return f"pk_test_demo_{self.slug}"

    @property
    def secret_key(self) -> str:
        return f"sk_test_demo_{self.slug}"


DEMO_CLINIC = DemoClinic(
    slug="demo",
    name="Demo Clinic",
    brand_colour="#0f766e",
    timezone="America/New_York",
    currency="USD",
    # $5.00: the $3.50 statement below is smaller, so it can only be paid in full.
    minimum_payment_minor=500,
    support_phone="+1 (202) 555-0100",
    support_email="billing@demo-clinic.example.com",
    card_check_policy=CardCheckPolicy.FLAG,
    staff=(
        DemoStaff("frontdesk@demo.settle.localhost", "Frankie Frontdesk", Role.FRONT_DESK),
        DemoStaff("billing@demo.settle.localhost", "Billie Ledger", Role.BILLING_MANAGER),
        DemoStaff("admin@demo.settle.localhost", "Addison Admin", Role.CLINIC_ADMIN),
        DemoStaff("compliance@demo.settle.localhost", "Cameron Compliance", Role.COMPLIANCE_OFFICER),
    ),
    patients=(
        DemoPatient(
            "A-10001",
            "Rosa",
            "Exampleton",
            datetime.date(1984, 11, 2),
            "rosa.exampleton@example.com",
            "+12025550143",
            (
                DemoStatement("DC-100234", 18640, 12, "Office visit, established patient; lab panel"),
                DemoStatement("DC-100311", 4500, 3, "Follow-up visit copay"),
            ),
        ),
        DemoPatient(
            "A-10002",
            "Jamal",
            "Testwood",
            datetime.date(1958, 3, 14),
            "jamal.testwood@example.com",
            "+12025550178",
            (DemoStatement("DC-100245", 125000, 20, "Outpatient procedure, patient responsibility"),),
        ),
        DemoPatient(
            "A-10003",
            "Mei",
            "Sampleby",
            datetime.date(2012, 6, 30),
            "guardian.sampleby@example.com",
            "+12025550121",
            (DemoStatement("DC-100252", 8999, 9, "Well-child visit, vaccine administration"),),
        ),
        DemoPatient(
            "A-10004",
            "Theodore",
            "Demoski",
            datetime.date(1947, 1, 9),
            "",
            "+12025550190",
            (
                DemoStatement("DC-100267", 61275, 40, "Imaging, patient share after insurance"),
                DemoStatement("DC-100298", 15000, 6, "Physical therapy, 3 sessions"),
            ),
        ),
        DemoPatient(
            "A-10005",
            "Grace",
            "O'Fictional",
            datetime.date(1990, 2, 28),
            "grace.ofictional@example.com",
            "",
            # Below the clinic's $5.00 minimum: payable in full only.
            (DemoStatement("DC-100273", 350, 15, "Balance after insurance adjustment"),),
        ),
        DemoPatient(
            "A-10006",
            "Santiago",
            "Placeholder-Ruiz",
            datetime.date(2000, 2, 29),
            "santiago.placeholder@example.com",
            "+12025550156",
            (DemoStatement("DC-100289", 32000, 25, "Urgent care visit"),),
        ),
        DemoPatient(
            "A-10007",
            "Eleanor",
            "Mockingbird",
            datetime.date(1972, 7, 4),
            "eleanor.mockingbird@example.com",
            "+12025550109",
            (DemoStatement("DC-100305", 7210, 2, "Telehealth visit"),),
        ),
    ),
    # Shaped like its statements, not one of them: a hint is stored in clear.
    statement_number_hint="DC-100000",
    address_line1="1200 Example Avenue NW",
    address_line2="Suite 300",
    city="Washington",
    state="DC",
    postal_code="20005",
)

NORTHSIDE_CLINIC = DemoClinic(
    slug="northside",
    name="Northside Family Practice",
    brand_colour="#7c3aed",
    timezone="America/Chicago",
    currency="USD",
    minimum_payment_minor=100,
    support_phone="+1 (312) 555-0199",
    support_email="accounts@northside-family.example.com",
    # Refuse: payments whose CVC or postal check fails are released, not taken.
    card_check_policy=CardCheckPolicy.REFUSE,
    staff=(
        DemoStaff("billing@northside.settle.localhost", "Nora Northside", Role.BILLING_MANAGER),
        DemoStaff("admin@northside.settle.localhost", "Nico Northside", Role.CLINIC_ADMIN),
    ),
    patients=(
        DemoPatient(
            "NF-2001",
            "Harold",
            "Fakenham",
            datetime.date(1966, 9, 21),
            "harold.fakenham@example.com",
            "+13125550117",
            (DemoStatement("NFP-20417", 21500, 10, "Annual physical, labs"),),
        ),
        DemoPatient(
            "NF-2002",
            "Lucia",
            "Specimen",
            datetime.date(1995, 12, 12),
            "lucia.specimen@example.com",
            "+13125550164",
            (DemoStatement("NFP-20433", 6000, 4, "Sick visit copay"),),
        ),
    ),
    # Its own numbering, shaped like its statements.
    statement_number_hint="NFP-20000",
)

DEMO_CLINICS: tuple[DemoClinic, ...] = (DEMO_CLINIC, NORTHSIDE_CLINIC)


# --- What a seed run reports ----------------------------------------------------------


@dataclass(frozen=True)
class SeededStatement:
    number: str  # as printed, e.g. DC-100234
    patient_name: str
    date_of_birth: datetime.date
    balance: Money


@dataclass(frozen=True)
class SeededLogin:
    email: str
    role: str
    # False when someone changed the password after seeding (it is never reset).
    password_is_demo: bool


@dataclass(frozen=True)
class SeededClinic:
    slug: str
    name: str
    public_id: str
    patient_url: str
    staff_login_url: str
    webhook_path: str  # on the platform host
    statements: tuple[SeededStatement, ...]
    staff: tuple[SeededLogin, ...]


@dataclass
class DemoSeedResult:
    clinics: list[SeededClinic] = field(default_factory=list)
    operator: SeededLogin | None = None
    admin_url: str = ""
    password: str = DEMO_PASSWORD
    created: dict[str, int] = field(default_factory=dict)

    @property
    def changed_anything(self) -> bool:
        return any(self.created.values())

    def _count(self, kind: str) -> None:
        self.created[kind] = self.created.get(kind, 0) + 1


# --- Seeding ------------------------------------------------------------------------


def _user_ensure(*, email: str, full_name: str, password: str, result: DemoSeedResult, superuser: bool = False) -> User:
    """The user with `email`, created with `password` when missing. An existing
    user is left alone: a changed password is reported, never reset."""
    user = User.objects.filter(email=email).first()
    if user is not None:
        return user
    # Raises ValidationError if the password would not be accepted from a person.
    validate_password(password, User(email=email, full_name=full_name))
    if superuser:
        user = User.objects.create_superuser(email, password, full_name=full_name)
    else:
        user = User.objects.create_user(email, password, full_name=full_name)
    result._count("users")
    return user


PROFILE_FIELDS = ("statement_number_hint", "address_line1", "address_line2", "city", "state", "postal_code")


def _profile_fill(*, tenant: Tenant, spec: DemoClinic, result: DemoSeedResult) -> None:
    """Set the profile fields the clinic left blank (a database seeded before
    they existed gets them too); a value someone set is never overwritten."""
    missing = [name for name in PROFILE_FIELDS if getattr(spec, name) and not getattr(tenant, name)]
    if not missing:
        return
    for name in missing:
        setattr(tenant, name, getattr(spec, name))
    tenant.full_clean()
    tenant.save(update_fields=missing)
    result._count("clinic profiles")


def _clinic_seed(*, spec: DemoClinic, today: datetime.date, password: str, result: DemoSeedResult) -> SeededClinic:
    created_before = sum(result.created.values())
    tenant = Tenant.objects.filter(slug=spec.slug).first()
    if tenant is None:
        tenant = tenant_create(
            slug=spec.slug,
            name=spec.name,
            currency=spec.currency,
            timezone=spec.timezone,
            brand_colour=spec.brand_colour,
            minimum_payment_minor=spec.minimum_payment_minor,
            support_phone=spec.support_phone,
            support_email=spec.support_email,
        )
        result._count("tenants")
    _profile_fill(tenant=tenant, spec=spec, result=result)

    logins: list[SeededLogin] = []
    for staff in spec.staff:
        user = _user_ensure(email=staff.email, full_name=staff.full_name, password=password, result=result)
        logins.append(
            SeededLogin(email=user.email, role=staff.role.label, password_is_demo=user.check_password(password))
        )

    seeded: list[SeededStatement] = []
    with tenant_scope(tenant):
        if not ProcessorAccount.objects.filter(tenant=tenant).exists():
            processor_account_set(
                tenant=tenant,
                publishable_key=spec.publishable_key,
                secret_key=spec.secret_key,
                # Random per database; make run registers it with localstripe.
                webhook_secret=f"whsec_demo_{secrets.token_hex(16)}",
                card_check_policy=spec.card_check_policy,
            )
            result._count("processor_accounts")

        for staff in spec.staff:
            user = User.objects.get(email=staff.email)
            if not Membership.objects.filter(tenant=tenant, user=user).exists():
                # No membership service exists yet (the staff console brings one).
                Membership.objects.create(tenant=tenant, user=user, role=staff.role)
                result._count("memberships")

        for patient_spec in spec.patients:
            patient = Patient.objects.filter(
                blind_index_filter(
                    tenant_id=tenant.pk,
                    model=Patient,
                    field_name="account_number_index",
                    values=[patient_spec.account_number],
                )
            ).first()
            if patient is None:
                patient = patient_create(
                    tenant=tenant,
                    account_number=patient_spec.account_number,
                    first_name=patient_spec.first_name,
                    last_name=patient_spec.last_name,
                    date_of_birth=patient_spec.date_of_birth,
                    email=patient_spec.email,
                    phone=patient_spec.phone,
                )
                result._count("patients")
            for statement_spec in patient_spec.statements:
                statement = Statement.objects.filter(
                    blind_index_filter(
                        tenant_id=tenant.pk, model=Statement, field_name="number_index", values=[statement_spec.number]
                    )
                ).first()
                if statement is None:
                    issued = today - datetime.timedelta(days=statement_spec.issued_days_ago)
                    statement = statement_issue(
                        tenant=tenant,
                        patient=patient,
                        number=statement_spec.number,
                        statement_date=issued,
                        due_date=issued + datetime.timedelta(days=30),
                        amount_due_minor=statement_spec.amount_due_minor,
                        summary=statement_spec.summary,
                    )
                    result._count("statements")
                seeded.append(
                    SeededStatement(
                        number=statement.number,
                        patient_name=patient.display_name,
                        date_of_birth=patient.date_of_birth,
                        balance=statement_balance(statement=statement),
                    )
                )

    if sum(result.created.values()) > created_before:
        audit_record(
            action="demo.seeded",
            tenant=tenant,
            actor_role="system",
            target_type="tenant",
            target_id=str(tenant.public_id),
            outcome=Outcome.SUCCESS,
        )

    base_url = tenant_base_url(tenant)
    return SeededClinic(
        slug=tenant.slug,
        name=tenant.name,
        public_id=str(tenant.public_id),
        patient_url=base_url,
        staff_login_url=f"{base_url}staff/login/",
        webhook_path=f"/webhooks/stripe/{tenant.public_id}/",
        statements=tuple(seeded),
        staff=tuple(logins),
    )


def demo_seed(
    *,
    clinics: Sequence[DemoClinic] = DEMO_CLINICS,
    password: str = DEMO_PASSWORD,
    today: datetime.date | None = None,
) -> DemoSeedResult:
    """Create the demo clinics, staff, patients and statements that are missing.

    Platform-level act (no tenant permission applies); development and test
    only: raises DemoSeedRefused when SETTLE_ENV is production. Writes one
    `demo.seeded` audit event per clinic it changed, in the same transaction.
    """
    if settings.PRODUCTION:
        raise DemoSeedRefused("seed_demo creates demo users with a published password; it never runs in production")
    today = today or timezone.localdate()
    result = DemoSeedResult(password=password, admin_url=platform_url("/admin/"))
    with transaction.atomic(), platform_scope():
        operator = _user_ensure(
            email=OPERATOR_EMAIL, full_name="Pat Operator", password=password, result=result, superuser=True
        )
        result.operator = SeededLogin(
            email=operator.email, role="Platform operator", password_is_demo=operator.check_password(password)
        )
        for spec in clinics:
            result.clinics.append(_clinic_seed(spec=spec, today=today, password=password, result=result))
    return result


# --- Reporting ------------------------------------------------------------------------


def demo_summary(result: DemoSeedResult) -> str:
    """One line: what this run created, or that nothing changed."""
    if not result.changed_anything:
        return "Demo data already present; nothing changed."
    return "Seeded: " + ", ".join(f"{count} {kind}" for kind, count in sorted(result.created.items())) + "."


def demo_report(result: DemoSeedResult) -> str:
    """The facts a developer needs to try the demo, as printable text."""
    lines: list[str] = []
    for clinic in result.clinics:
        lines.append(f"{clinic.name}  ({clinic.slug})")
        lines.append(f"  Patient page:  {clinic.patient_url}")
        lines.append(f"  Staff login:   {clinic.staff_login_url}")
        lines.append("")
        lines.append(f"  {'Statement':<11} {'Date of birth':<14} {'Balance':>11}  Patient")
        for row in clinic.statements:
            lines.append(
                f"  {row.number:<11} {row.date_of_birth.isoformat():<14} {row.balance!s:>11}  {row.patient_name}"
            )
        lines.append("")
        lines.append(f"  {'Staff login':<36} Role")
        for login in clinic.staff:
            note = "" if login.password_is_demo else "  (password changed since seeding)"
            lines.append(f"  {login.email:<36} {login.role}{note}")
        lines.append("")
    if result.operator is not None:
        note = "" if result.operator.password_is_demo else "  (password changed since seeding)"
        lines.append(f"Django admin:  {result.admin_url}")
        lines.append(f"  {result.operator.email:<36} Platform operator (superuser){note}")
        lines.append("")
    lines.append(f"Password for every demo login (development only): {result.password}")
    return "\n".join(lines)
