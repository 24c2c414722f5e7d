from __future__ import annotations

from django.db import migrations

from portal.tenancy.rls import enable_row_level_security


class Migration(migrations.Migration):
    dependencies = [("security", "0001_initial")]

    operations = [enable_row_level_security("security_membership")]
