"""Field-level encryption of PHI and tenant secrets (docs/decisions/0005-phi-envelope-encryption.md).

- providers: where data keys are generated and wrapped (local master key, AWS KMS).
- models: DataKey (per tenant, purpose and version, stored wrapped) and KeyRotation.
- keyring: the bounded, per-tenant in-memory cache of plaintext data keys.
- cipher: AES-256-GCM ciphertext format and keyed blind indexes.
- normalize: normalisers for blind-index look-ups.
- fields: EncryptedTextField, EncryptedDateField, EncryptedJSONField, BlindIndexField.
- rotation: re-encryption in resumable batches, retirement, rewrap.
- errors: one exception type per failure.

Import the submodule you need; this package imports nothing itself so that
models can import fields without cycles.
"""
