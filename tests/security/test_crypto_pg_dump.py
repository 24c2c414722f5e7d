"""A dump of the database holds no patient identifier and no tenant secret in clear."""

from __future__ import annotations

import datetime
import os
import re
import shutil
import subprocess

import pytest
from django.db import connection

from billing.demo import DEMO_CLINICS, demo_seed
from billing.models import Checkout, Patient, ProcessorAccount, Statement
from billing.services.lookup import statement_lookup
from portal.models import Tenant
from portal.tenancy.context import tenant_scope
from security.crypto.fields import blind_index_filter


def _dump() -> str:
    settings = connection.settings_dict
    binary = shutil.which("pg_dump")
    assert binary, "pg_dump is not installed"
    env = {**os.environ, "PGPASSWORD": settings.get("PASSWORD") or ""}
    result = subprocess.run(
        [
            binary,
            "--no-owner",
            "--host",
            settings["HOST"] or "127.0.0.1",
            "--port",
            str(settings["PORT"] or 5432),
            "--username",
            settings["USER"],
            settings["NAME"],
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout


def _phi_and_secrets() -> list[str]:
    values: list[str] = []
    for clinic in DEMO_CLINICS:
        values.append(clinic.secret_key)
        for patient in clinic.patients:
            values += [patient.account_number, patient.first_name, patient.last_name, patient.email, patient.phone]
            dob = patient.date_of_birth
            values += [dob.isoformat(), dob.strftime("%m/%d/%Y"), dob.strftime("%Y%m%d")]
            for statement in patient.statements:
                values += [statement.number, statement.number.replace("-", ""), statement.summary]
    return [value for value in values if value]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_pg_dump_of_a_seeded_portal_shows_no_phi_or_secrets_yet_lookups_work() -> None:
    demo_seed(today=datetime.date(2026, 11, 20))
    webhook_secrets = []
    for tenant in Tenant.objects.all():
        with tenant_scope(tenant):
            webhook_secrets.append(ProcessorAccount.objects.get().webhook_secret)
    assert len(webhook_secrets) == 2 and all(s.startswith("whsec_") for s in webhook_secrets)
    # A checkout holding the processor's SetupIntent client secret (a credential for that SetupIntent).
    tenant = Tenant.objects.order_by("pk")[0]
    with tenant_scope(tenant):
        checkout = Checkout.objects.create(
            tenant=tenant,
            statement=Statement.objects.filter(tenant=tenant).order_by("pk")[0],
            setup_intent_id="seti_dumptest",
            setup_intent_client_secret="seti_dumptest_secret_Zq81VbPm",
            expires_at=datetime.datetime(2026, 11, 21, tzinfo=datetime.UTC),
        )
        assert Checkout.objects.get(pk=checkout.pk).setup_intent_client_secret == "seti_dumptest_secret_Zq81VbPm"
    webhook_secrets.append("seti_dumptest_secret_Zq81VbPm")

    dump = _dump()
    assert "COPY public.billing_patient" in dump and "s1:" in dump  # the data is there, sealed

    leaked = [value for value in [*_phi_and_secrets(), *webhook_secrets] if value in dump]
    assert leaked == []
    # No patient phone number in any format: not even as a run of digits once
    # every separator is removed from the whole dump.
    digits = re.sub(r"\D", "", dump)
    phones = [p.phone.lstrip("+") for clinic in DEMO_CLINICS for p in clinic.patients if p.phone]
    assert phones and [phone for phone in phones if phone in digits] == []

    # ...and everything is still found, through the blind indexes.
    demo = Tenant.objects.get(slug="demo")
    with tenant_scope(demo):
        statement = statement_lookup(
            tenant=demo, number="dc 100234", date_of_birth=datetime.date(1984, 11, 2), ip="192.0.2.10"
        )
        assert statement.patient.first_name == "Rosa"
        by_name = Patient.objects.filter(
            blind_index_filter(
                tenant_id=demo.pk, model=Patient, field_name="name_dob_index", values=["EXAMPLETON", "11/02/1984"]
            )
        )
        assert [p.account_number for p in by_name] == ["A-10001"]
        by_phone = Patient.objects.filter(
            blind_index_filter(tenant_id=demo.pk, model=Patient, field_name="phone_index", values=["(202) 555-0178"])
        )
        assert [p.last_name for p in by_phone] == ["Testwood"]
        by_email = Patient.objects.filter(
            blind_index_filter(
                tenant_id=demo.pk, model=Patient, field_name="email_index", values=["Jamal.Testwood@Example.com "]
            )
        )
        assert by_email.count() == 1
        assert Statement.objects.count() == 9
