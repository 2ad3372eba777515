"""The key-encryption key (KOMAR_KEK): what the gateway's secrets at rest are sealed with.

A KEK is 32 random bytes, given base64url-encoded (`python -m gateway kek` prints a new one).
Signing keys are sealed with AES-256-GCM under the current KEK, each row naming the KEK it was
sealed with by `kek_id` (a digest of the KEK, never the KEK itself). During a rotation the
previous KEK (KOMAR_KEK_PREVIOUS) still opens what it sealed, and the gateway re-seals those
rows with the current KEK at start. The KEK also keys the digest of admin requests kept for
Idempotency-Key replays, so a stored digest of a request that carried a password cannot be
used to guess that password offline.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEK_BYTES = 32
NONCE_BYTES = 12
MISSING = (
    "KOMAR_KEK is not set. The gateway stores its token signing keys encrypted with this "
    "key-encryption key and will not start without it. Generate one with "
    "`python -m gateway kek`, keep it in your secret store and provide it as KOMAR_KEK "
    "(`make run` generates one under var/ by itself); see docs/operations.md#key-encryption-key."
)


class KekError(ValueError):
    """A KEK that is missing or malformed, or a sealed value no configured KEK opens."""


def new_kek() -> str:
    """A fresh KEK, base64url without padding (43 characters)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(KEK_BYTES)).decode().rstrip("=")


def parse_kek(text: str, name: str = "KOMAR_KEK") -> bytes:
    """The 32 key bytes of a KEK given base64url (standard base64 is accepted too)."""
    value = text.strip()
    try:
        raw = base64.urlsafe_b64decode(
            value.replace("+", "-").replace("/", "_") + "=" * (-len(value) % 4)
        )
    except (binascii.Error, ValueError) as exc:
        raise KekError(f"{name} is not base64: generate one with `python -m gateway kek`") from exc
    if len(raw) != KEK_BYTES:
        raise KekError(
            f"{name} must encode exactly {KEK_BYTES} bytes (it encodes {len(raw)}): "
            "generate one with `python -m gateway kek`"
        )
    return raw


def kek_id(key: bytes) -> str:
    """A short public name of a KEK, stored beside what it sealed (a digest, not the key)."""
    return hashlib.sha256(b"komar-kek-id\x00" + key).hexdigest()[:16]


class Keks:
    """The current KEK, which seals, and optionally the previous one, which only opens."""

    def __init__(self, current: str, previous: str | None = None) -> None:
        self._current = parse_kek(current, "KOMAR_KEK")
        self.current_id = kek_id(self._current)
        self._by_id: dict[str, AESGCM] = {self.current_id: AESGCM(self._current)}
        if previous:
            old = parse_kek(previous, "KOMAR_KEK_PREVIOUS")
            self._by_id.setdefault(kek_id(old), AESGCM(old))
        # The key of request digests kept for Idempotency-Key replays (HKDF-like expansion).
        self.request_digest_key = hmac.new(
            self._current, b"komar idempotency request digest", hashlib.sha256
        ).digest()

    def knows(self, sealed_with: str) -> bool:
        return sealed_with in self._by_id

    def seal(self, plaintext: bytes, context: bytes) -> tuple[str, bytes]:
        """Encrypt under the current KEK; `context` (e.g. the key id) is bound as associated
        data, so a sealed value moved to another row does not open. Returns (kek_id, sealed)."""
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = nonce + self._by_id[self.current_id].encrypt(nonce, plaintext, context)
        return self.current_id, sealed

    def unseal(self, sealed_with: str, sealed: bytes, context: bytes) -> bytes:
        """Decrypt what a configured KEK sealed; KekError otherwise."""
        aead = self._by_id.get(sealed_with)
        if aead is None:
            raise KekError(
                f"a value was sealed with KEK {sealed_with}, which is neither KOMAR_KEK nor "
                "KOMAR_KEK_PREVIOUS"
            )
        try:
            return aead.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], context)
        except InvalidTag as exc:
            raise KekError(f"a value sealed with KEK {sealed_with} does not open") from exc
