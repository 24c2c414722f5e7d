"""Print (or write) the public key that signs audit checkpoints and exports.

    manage.py audit_signing_key [--out FILE]

Publish it, or hand it to auditors, out of band: `python -m audit.verify FILE
--public-key audit-signing.pem` then trusts exactly this key. Every key the
provider still vouches for (after a master-key or KMS key change) is listed,
the current one first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.signing import ProviderSigner, current_signer


class Command(BaseCommand):
    help = "Show the audit signing public key (PEM) and its fingerprint, for `python -m audit.verify --public-key`."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--out", metavar="FILE", help="write the current key's PEM to FILE")

    def handle(self, *args: Any, **options: Any) -> None:
        signer = current_signer()
        if not isinstance(signer, ProviderSigner):
            raise CommandError("audit records are signed with the HMAC key (SETTLE_AUDIT_SIGNER=hmac): no public key")
        current = signer.public_key
        self.stdout.write(f"Current signing key ({signer.algorithm}): {current.fingerprint}")
        for key in signer.trusted.keys:
            if key != current:
                self.stdout.write(f"Earlier key still trusted in place: {key.fingerprint}")
        if options["out"]:
            Path(options["out"]).write_text(current.pem())
            self.stdout.write(f"Wrote {options['out']}")
        else:
            self.stdout.write(current.pem())
