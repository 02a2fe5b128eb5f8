"""Arguments of the Serve app builder (`deployments.app:build_app`), as serveConfigV2 `args`."""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from cluster.base_config import StrictModel
from cluster.config import ClusterConfig, ConfigError, load_config, parse_config


class AppArgs(StrictModel):
    """Exactly one of `config` (inline), `config_path` (a YAML file) or `profile` (a shipped one)."""

    config: dict[str, Any] | None = Field(None, description="The whole cluster config, inline.")
    config_path: str | None = Field(None, description="Path of a cluster config YAML file.")
    profile: str | None = Field(None, description="A shipped profile: demo, cpu or gpu.")

    @model_validator(mode="after")
    def _exactly_one(self) -> AppArgs:
        given = [name for name in ("config", "config_path", "profile") if getattr(self, name) is not None]
        if len(given) > 1:
            raise ValueError(f"give one of config, config_path, profile; got {', '.join(given)}")
        return self

    def cluster_config(self) -> ClusterConfig:
        """Resolve and validate the cluster config these args describe (demo when empty).

        Raises:
            ConfigError: naming the offending field.
        """
        if self.config is not None:
            return parse_config(self.config)
        return load_config(self.config_path, profile=self.profile)


def parse_app_args(args: dict[str, Any] | None) -> ClusterConfig:
    """Validate builder args and return the cluster config.

    Raises:
        ConfigError: for unknown keys or an invalid config.
    """
    from pydantic import ValidationError

    from cluster.config import format_validation_error

    try:
        parsed = AppArgs.model_validate(args or {})
    except ValidationError as error:
        raise ConfigError(format_validation_error(error).replace("cluster config", "app args")) from None
    return parsed.cluster_config()
