"""Field encrypt+decrypt throughput: Settle's encrypted field against plaintext and Fernet.

    .venv/bin/python bench/crypto_fields.py [--values 20000]

One "operation" is what a save and a later read of one field value cost in
Python: for the plaintext TextField, get_db_prep_save + from_db_value; for
EncryptedTextField, pre_save (AES-256-GCM seal bound to tenant/model/field/row)
+ from_db_value + the first attribute read (open and verify). Data keys are
warm in the in-memory cache, as in a running process. The database is not
involved in the timed part.

django-fernet-encrypted-fields and django-cryptography could not be
installed here (no network), so their core operation stands in for them:
cryptography's Fernet (AES-128-CBC + HMAC-SHA256, base64) encrypt+decrypt of
the same value, which is what both packages call per value (their field
plumbing only adds to it).
"""

from __future__ import annotations

import argparse

from crypto_support import best_of, setup, teardown


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--values", type=int, default=20_000)
    args = parser.parse_args()
    n = args.values
    connection = setup("fields")
    old_name = connection.settings_dict["NAME"]
    try:
        import datetime

        from cryptography.fernet import Fernet
        from django.db import models

        from billing.models import Patient
        from billing.services.statements import patient_create
        from portal.services import tenant_create
        from portal.tenancy.context import tenant_scope

        tenant = tenant_create(slug="bench", name="Bench Clinic")
        value = "Theodore Exampleton-Smith"  # 25 characters, a long-ish name
        with tenant_scope(tenant):
            patient = patient_create(
                tenant=tenant,
                account_number="B-1",
                first_name=value,
                last_name="Bench",
                date_of_birth=datetime.date(1980, 1, 1),
            )
            field = Patient._meta.get_field("first_name")
            plain = models.TextField()

            def plaintext() -> None:
                for _ in range(n):
                    stored = plain.get_db_prep_save(value, connection)
                    plain.from_db_value(stored, None, connection) if hasattr(
                        plain, "from_db_value"
                    ) else plain.to_python(stored)

            def encrypted() -> None:
                for _ in range(n):
                    patient.first_name = value
                    stored = field.get_db_prep_save(field.pre_save(patient, False), connection)
                    patient.__dict__["first_name"] = field.from_db_value(stored, None, connection)
                    assert patient.first_name == value

            fernet = Fernet(Fernet.generate_key())
            encoded = value.encode()

            def fernet_core() -> None:
                for _ in range(n):
                    assert fernet.decrypt(fernet.encrypt(encoded)) == encoded

            for run in (plaintext, encrypted, fernet_core):  # warm up
                run()
            t_plain = best_of(5, plaintext)
            t_enc = best_of(5, encrypted)
            t_fernet = best_of(5, fernet_core)

        print(f"values: {n} x {len(value)} characters; median of 5 runs")
        print(f"plaintext TextField:        {n / t_plain:>12,.0f} ops/s ({t_plain / n * 1e6:6.2f} us/op)")
        print(f"Settle EncryptedTextField:  {n / t_enc:>12,.0f} ops/s ({t_enc / n * 1e6:6.2f} us/op)")
        print(f"Fernet core (stand-in):     {n / t_fernet:>12,.0f} ops/s ({t_fernet / n * 1e6:6.2f} us/op)")
        print(f"ratio Settle/Fernet throughput: {t_fernet / t_enc:.2f} (target >= 1.0)")
        print(f"ratio plaintext/Settle time:    {t_enc / t_plain:.1f}x slower than plaintext")
    finally:
        teardown(connection, old_name)


if __name__ == "__main__":
    main()
