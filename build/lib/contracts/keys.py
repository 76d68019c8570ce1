"""Auth keys: generation and salted hashes. Plaintext keys never leave the API process."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
import uuid

_ALPHABET = string.ascii_letters + string.digits

GUEST_SUBJECT = "guest"
GUEST_KEY = "23bc46b1-71f6-4ed5-8c54-816aa4f8c502:123zO3xZCLrMN6v2BKK1dXYFpXlPkccOFqm12CdAsMgRU4VrNZ9lyGVCGuMDGIwP"
SYSTEM_SUBJECT = "whisk.system"
SYSTEM_KEY = "789c46b1-71f6-4ed5-8c54-816aa4f8c502:abczO3xZCLrMN6v2BKK1dXYFpXlPkccOFqm12CdAsMgRU4VrNZ9lyGVCGuMDGIwP"


def generate() -> str:
    return f"{uuid.uuid4()}:{''.join(secrets.choice(_ALPHABET) for _ in range(64))}"


def split(authkey: str) -> tuple[str, str]:
    uid, _, key = authkey.partition(":")
    return uid, key


def new_salt() -> str:
    return secrets.token_hex(16)


def hash_key(key: str, salt: str) -> str:
    # Keys are 64 random characters, so one salted SHA-256 is as strong as a slow KDF here and keeps auth fast.
    return hashlib.sha256(f"{salt}:{key}".encode()).hexdigest()


def verify(key: str, salt: str, expected_hash: str) -> bool:
    return hmac.compare_digest(hash_key(key, salt), expected_hash)


def fingerprint(authkey: str) -> str:
    """A non-secret handle for logs: the uuid part only."""
    return split(authkey)[0]
