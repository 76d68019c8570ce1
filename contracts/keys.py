"""Auth keys: generation and salted hashes. Plaintext keys never leave the API process."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import string
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import orjson

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


# ---- activation-scoped keys --------------------------------------------------------------------------------
# An action with `provide-api-key` gets a key minted by its invoker for that activation only, in the `uuid:key`
# form clients expect: the uuid is the activation id, the key holds (subject, namespace, expiry) and an HMAC of
# all of it under a platform secret shared by the API and the invokers. The API verifies it without any lookup of
# the key, and no user key travels through Kafka.

ACTIVATION_KEY_GRACE_MS = 10_000  # past the activation's deadline, for the action's last calls in flight
SECRET_FILE = "activation-key.secret"


@dataclass(frozen=True)
class ActivationKey:
    activation_id: str
    subject: str
    namespace: str
    expires_ms: int


def _b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def _sign(secret: bytes, uid: str, claims: str) -> str:
    return _b64(hmac.new(secret, f"{uid}:{claims}".encode(), hashlib.sha256).digest())


def mint(secret: bytes, activation_id: str, subject: str, namespace: str, expires_ms: int) -> str:
    """>>> k = mint(b"s", "0" * 32, "guest", "guest", 5)
    >>> read_minted(b"s", k, now_ms=4)
    ActivationKey(activation_id='00000000000000000000000000000000', subject='guest', namespace='guest', expires_ms=5)
    >>> read_minted(b"s", k, now_ms=6) is None, read_minted(b"t", k, now_ms=4) is None
    (True, True)
    """
    uid = str(uuid.UUID(hex=activation_id))
    claims = _b64(orjson.dumps([subject, namespace, expires_ms]))
    return f"{uid}:{claims}.{_sign(secret, uid, claims)}"


def read_minted(secret: bytes, authkey: str, now_ms: int) -> ActivationKey | None:
    """The claims of a valid, unexpired activation key; None for anything else (including ordinary keys)."""
    uid, key = split(authkey)
    claims, dot, sig = key.partition(".")
    if not dot or not hmac.compare_digest(sig.encode(), _sign(secret, uid, claims).encode()):
        return None
    try:
        subject, namespace, expires_ms = orjson.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))
    except (ValueError, TypeError):
        return None
    if now_ms > expires_ms:
        return None
    return ActivationKey(uuid.UUID(uid).hex, subject, namespace, expires_ms)


def activation_secret(home: Path) -> bytes:
    """WSK_ACTIVATION_KEY_SECRET (hex; a Kubernetes Secret), else a random one made once in the state dir (0600)."""
    if env := os.environ.get("WSK_ACTIVATION_KEY_SECRET"):
        return bytes.fromhex(env)
    path = Path(home) / SECRET_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # made by another component: it may still be writing it
        for _ in range(50):
            if len(data := path.read_bytes().strip()) == 64:
                return bytes.fromhex(data.decode())
            time.sleep(0.02)
        raise RuntimeError(f"{path} is not a 64-hex-digit secret") from None
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32))
    return bytes.fromhex(path.read_text().strip())
