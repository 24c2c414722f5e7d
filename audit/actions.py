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
    "payment.staff_canceled": "Staff canceled a payment left waiting for the patient's 3-D Secure authentication",
    "receipt.viewed": "A receipt was viewed or downloaded",
    "webhook.processed": "A processor webhook event was processed",
    "auth.login": "A user passed the password step of signing in",
    "auth.login_failed": "A sign-in failed at the password step (counts toward lockout)",
    "auth.otp_failed": "A second-factor code was wrong (counts toward lockout)",
    "auth.mfa_verified": "A user completed signing in with their second factor",
    "auth.mfa_enrolled": "A user set up their authenticator app (recovery codes issued)",
    "auth.recovery_code_used": "A user signed in with a one-time recovery code",
    "auth.recovery_codes_regenerated": "A user replaced their recovery codes",
    "auth.locked_out": "Lockout: failures reached the limit, or an attempt was refused while locked",
    "auth.password_changed": "A user changed their password; their other sessions ended",
    "auth.logout": "A staff member logged out",
    "auth.session_ended": "A user ended one of their other sessions",
    "auth.sessions_ended_others": "A user ended all their other sessions",
    # A clinic's staff, managed by its clinic admins (security.team, security.invitations).
    "staff.invited": "A clinic admin invited someone to the staff in a role",
    "staff.invitation_revoked": "A clinic admin revoked a pending invitation",
    "staff.invitation_accepted": "An invitation was accepted: the person joined the staff",
    "staff.role_changed": "A clinic admin changed a staff member's role",
    "staff.deactivated": "A clinic admin deactivated a staff member (their sessions ended)",
    "staff.reactivated": "A clinic admin reactivated a staff member",
    "staff.mfa_reset": "A clinic admin reset a staff member's second factor (their sessions ended)",
    "staff.unlocked": "A clinic admin unlocked a staff member's locked-out account",
    # Platform operators' emergency access (security.breakglass).
    "breakglass.started": "A platform operator started emergency access to the clinic (duration; the reason is on the grant)",
    "breakglass.ended": "A platform operator ended emergency access before it expired",
    "ledger.viewed": "Staff viewed a list of payments naming patients",
    "patient.list_viewed": "Staff viewed a page of the patient list (the patients shown are listed)",
    "patient.searched": "Staff searched patients by an exact key (kinds of key tried and patients shown; never the text)",
    "demo.seeded": "The demo clinic was seeded",
    # Access to the audit trail itself (PCI DSS 10.2.1.3) and its maintenance.
    "audit.searched": "A compliance officer searched the audit trail",
    "audit.event_viewed": "A compliance officer opened one audit event",
    "audit.patient_report": "A compliance officer viewed who accessed a patient's records",
    "audit.user_report": "A compliance officer viewed what a user did",
    "audit.verify_requested": "Verification of the audit chain was requested",
    "audit.verified": "The audit chain was verified (outcome says whether it is intact)",
    "audit.export_requested": "An audit export was requested",
    "audit.export_built": "An audit export finished building (or failed)",
    "audit.export_link_created": "A single-use download link for an audit export was issued",
    "audit.export_downloaded": "An audit export file was downloaded (outcome denied: link used or expired)",
    "audit.checkpoint_signed": "A signed checkpoint of an audit chain head was written",
    "audit.archived": "A month of audit events was archived to object storage",
    "key.rotation_started": "A data key rotation started: a new key version is active (purpose, version)",
    "key.rotation_completed": "A data key rotation finished: no row uses the old versions, which are retired",
    "key.rewrapped": "Data keys were re-wrapped under the current master/KMS key (rows untouched)",
}

# Detail keys that list the public ids of records an act touched, and the
# type of record each names: the recorder indexes them, so "who accessed this
# patient" also finds list pages and searches that showed the patient.
REFERENCE_LISTS: dict[str, str] = {
    "patients": "patient",
    "statements": "statement",
    "payments": "payment",
}
