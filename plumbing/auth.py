"""Who may call what: an API key at the edge, a service credential inside, least privilege per endpoint.

* The public API (monolith and gateway) requires one of the API keys the process was given (``ARCHBENCH_API_KEYS``,
  comma-separated), sent as ``X-API-Key`` or ``Authorization: Bearer``.
* Internal endpoints require a service credential: the caller's component name and an HMAC of it under a secret shared
  by the run (``ARCHBENCH_SERVICE_SECRET``), so a credential names who calls and cannot be forged without the secret.
  Each internal endpoint lists the callers it accepts (payments takes charges and refunds from orders only).
* With auth enabled and no key or secret configured, everything is refused (fail closed).

Keys and secrets come from the environment, never from code or from files in the run directory.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

API_KEYS_ENV = "ARCHBENCH_API_KEYS"
SERVICE_SECRET_ENV = "ARCHBENCH_SERVICE_SECRET"
API_KEY_HEADER = "x-api-key"
CREDENTIAL_HEADER = "x-service-credential"


@dataclass(frozen=True)
class AuthConfig:
    """What this process accepts. ``enabled=False`` turns every check off (to measure what the checks cost)."""

    enabled: bool = False
    api_keys: frozenset[str] = frozenset()
    service_secret: bytes | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str], enabled: bool = True) -> AuthConfig:
        keys = frozenset(k.strip() for k in env.get(API_KEYS_ENV, "").split(",") if k.strip())
        secret = env.get(SERVICE_SECRET_ENV, "").encode() or None
        return cls(enabled, keys, secret)

    def credential(self, component: str) -> str | None:
        """The credential ``component`` presents to its peers (None without a secret)."""
        if self.service_secret is None:
            return None
        return f"{component}:{_sign(self.service_secret, component)}"

    def api_key_ok(self, headers: Mapping[str, str]) -> bool:
        if not self.enabled:
            return True
        given = headers.get(API_KEY_HEADER)
        if given is None:
            scheme, _, token = headers.get("authorization", "").partition(" ")
            given = token if scheme.lower() == "bearer" else None
        return given is not None and any(hmac.compare_digest(given.encode(), k.encode()) for k in self.api_keys)

    def caller(self, headers: Mapping[str, str]) -> str | None:
        """The component a valid service credential names, or None."""
        value = headers.get(CREDENTIAL_HEADER, "")
        name, _, signature = value.partition(":")
        if self.service_secret is None or not name or not signature:
            return None
        return name if hmac.compare_digest(signature, _sign(self.service_secret, name)) else None


def _sign(secret: bytes, component: str) -> str:
    return hmac.new(secret, component.encode(), hashlib.sha256).hexdigest()[:32]
