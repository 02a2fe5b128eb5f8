"""Optional bearer API keys for the OpenAI routes."""

from __future__ import annotations

import hmac
import os

from cluster.config import AuthConfig, ConfigError
from deployments.openai.protocol import OpenAIError


def load_api_keys(auth: AuthConfig) -> list[str]:
    """Keys from the env var (comma-separated) and the keys file (one per line, `#` comments).

    Raises:
        ConfigError: auth is enabled but no key is configured, or the keys file cannot be read.
    """
    keys = [k.strip() for k in os.environ.get(auth.keys_env, "").split(",") if k.strip()]
    if auth.keys_file is not None:
        try:
            lines = auth.keys_file.read_text().splitlines()
        except OSError as error:
            raise ConfigError(f"serving.auth.keys_file: cannot read {auth.keys_file}: {error}") from None
        keys += [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if auth.enabled and not keys:
        raise ConfigError(
            f"serving.auth.enabled is true but no API key is set in ${auth.keys_env} or serving.auth.keys_file"
        )
    return keys


class ApiKeyAuth:
    """Checks `Authorization: Bearer <key>` against the configured keys (constant-time)."""

    def __init__(self, auth: AuthConfig):
        self.enabled = auth.enabled
        self._keys = [k.encode() for k in load_api_keys(auth)] if auth.enabled else []

    def check(self, authorization: str | None) -> None:
        """Raise 401 unless auth is off or the header carries a valid key."""
        if not self.enabled:
            return
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise OpenAIError(
                401, "missing API key: send 'Authorization: Bearer <key>'", code="invalid_api_key"
            )
        presented = token.strip().encode()
        # Compare against every key so timing does not reveal which prefix matched.
        valid = False
        for key in self._keys:
            valid |= hmac.compare_digest(presented, key)
        if not valid:
            raise OpenAIError(401, "incorrect API key provided", code="invalid_api_key")
