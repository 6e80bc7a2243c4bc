"""A token checked as n8n's JWT Auth checks it (jsonwebtoken.verify(token, secret, {algorithms: ["HS256"]})):
its header, its HS256 signature, its expiry. Standard library only: Open WebUI's end-to-end environment
imports it too."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any


class JwtExpired(AssertionError):
    pass


class InvalidSignature(AssertionError):
    pass


def b64decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def verified_claims(token: str, secret: str, now: float | None = None) -> dict[str, Any]:
    """The token's claims once its header, signature and expiry are checked, or why not."""
    header, payload, signature = token.split(".")
    assert json.loads(b64decode(header)) == {"alg": "HS256", "typ": "JWT"}
    expected = hmac.new(secret.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(b64decode(signature), expected):
        raise InvalidSignature("invalid signature")
    claims: dict[str, Any] = json.loads(b64decode(payload))
    if (time.time() if now is None else now) >= claims["exp"]:
        raise JwtExpired("jwt expired")
    return claims
