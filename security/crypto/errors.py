"""Every way encryption can fail, as its own exception type.

Two families, so callers can tell "this ciphertext is wrong" from "the keys
cannot be reached right now":

- DecryptionError: the ciphertext is not valid for the place it was read
  from (another tenant's, another row's or field's, tampered, malformed).
  Retrying never helps; it is an integrity incident.
- KeyUnavailableError: the data key cannot be produced (no master key, a
  wrapped key that will not unwrap, KMS unreachable or refusing). Nothing is
  written and nothing falls back to plaintext.

Messages name what is wrong and which key (tenant id, purpose, version), never
key material or plaintext.
"""

from __future__ import annotations


class CryptoError(Exception):
    """Base class of every error raised by security.crypto."""


# --- The ciphertext is wrong -----------------------------------------------------


class DecryptionError(CryptoError):
    """A ciphertext could not be decrypted where it was read."""


class MalformedCiphertextError(DecryptionError):
    """The stored value is not a Settle ciphertext at all (or a truncated one)."""


class WrongTenantError(DecryptionError):
    """The ciphertext was sealed for another tenant."""


class WrongRowError(DecryptionError):
    """The ciphertext was sealed for another row, model or field of this tenant."""


class TamperedCiphertextError(DecryptionError):
    """The ciphertext names this row but fails authentication: it was altered."""


class UnknownDataKeyError(DecryptionError):
    """The ciphertext names a data key version this tenant does not have."""


# --- The keys cannot be produced ---------------------------------------------------


class KeyUnavailableError(CryptoError):
    """A data key could not be generated or unwrapped."""


class MasterKeyMissingError(KeyUnavailableError):
    """The local provider has no master key (or an unusable one)."""


class KeyUnwrapError(KeyUnavailableError):
    """A wrapped data key would not unwrap (wrong master/KMS key, wrong context, altered)."""


class KmsUnavailableError(KeyUnavailableError):
    """The KMS could not be reached, or refused the request (disabled key, no access)."""


# --- Misuse ------------------------------------------------------------------------------


class EncryptedFieldUsageError(CryptoError):
    """An encrypted field was used in a way that cannot keep its guarantees
    (filtered on, written by QuerySet.update, saved without a row id)."""
