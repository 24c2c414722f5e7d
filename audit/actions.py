"""The registry of audited actions. Every recorded action must be listed here."""

from __future__ import annotations

ACTIONS: dict[str, str] = {
    "statement.lookup": "A guest looked up a statement (outcome says whether it matched)",
    "statement.lookup_locked": "A guest statement look-up was refused by lockout",
    "checkout.opened": "A checkout was opened for a statement",
    "payment.attempted": "A card payment was submitted to the processor",
    "payment.succeeded": "A payment succeeded and was credited to the ledger",
    "payment.failed": "A payment attempt failed (declined, authentication failed, refused by policy)",
    "payment.canceled": "A payment was canceled",
    "payment.flagged": "A payment was flagged by the card-check policy",
    "payment.processor_unavailable": "The processor could not be reached; nothing was charged",
    "receipt.viewed": "A receipt was viewed or downloaded",
    "webhook.processed": "A processor webhook event was processed",
    "auth.login": "A staff member logged in",
    "auth.login_failed": "A staff login failed",
    "auth.logout": "A staff member logged out",
    "ledger.viewed": "Staff viewed a list of payments naming patients",
    "demo.seeded": "The demo clinic was seeded",
}
