"""The one settings object. Built once at the edge (CLI, worker, server start-up) and passed down.

Every field is read from an ``INFRABOT_<FIELD>`` environment variable; nothing below the edge
reads the environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SigningAlg = Literal["ES256", "RS256", "EdDSA"]

_REPO_WORKFLOWS = Path(__file__).resolve().parent.parent / "workflows"

SERVICE_NAMES = ("datadog", "github", "aws", "pagerduty")


class Settings(BaseSettings):
    """Configuration for every process of InfraBot Chains."""

    model_config = SettingsConfigDict(env_prefix="INFRABOT_", frozen=True, extra="forbid")

    state_dir: Path = Field(Path(".infrabot"), description="Keys, audit database, endpoints.json.")
    workflows_dir: Path = Field(_REPO_WORKFLOWS, description="Directory, policy and workflow YAML.")

    host: str = Field("127.0.0.1", description="Loopback address every server binds to.")
    auth_port: int = Field(8700, ge=0, le=65535, description="0 picks a free port.")
    datadog_port: int = Field(8701, ge=0, le=65535)
    github_port: int = Field(8702, ge=0, le=65535)
    aws_port: int = Field(8703, ge=0, le=65535)
    pagerduty_port: int = Field(8704, ge=0, le=65535)
    webhooks_port: int = Field(8705, ge=0, le=65535)
    issuer: str | None = Field(None, description="Defaults to the auth server's base URL.")

    signing_alg: SigningAlg = "ES256"
    allowed_algs: tuple[SigningAlg, ...] = ("ES256", "RS256", "EdDSA")
    token_ttl_seconds: int = Field(600, ge=1, le=900, description="Exchanged token lifetime cap.")
    root_token_ttl_seconds: int = Field(900, ge=1, le=900, description="Root token of a run.")
    leeway_seconds: int = Field(5, ge=0, le=60)
    max_depth: int = Field(4, ge=1, le=16, description="Maximum number of actors in a chain.")
    max_token_bytes: int = Field(8192, ge=512, le=65536)
    assertion_max_lifetime_seconds: int = Field(300, ge=10, le=3600)

    redis_url: str | None = Field(
        None, description="Revocation registry and replay cache; in-process when unset."
    )
    broker_url: str = Field("memory://localhost/",
                            description="Celery broker; redis://... for distributed.")
    visibility_timeout_seconds: int = Field(
        120, ge=41, le=3600, description="Redis broker: how long an unacknowledged message "
                                         "waits before redelivery (a worker lost mid-hop).")
    run_deadline_seconds: int = Field(
        960, ge=5, le=86400, description="A run still unfinished this long after it started is "
                                         "ended failed (deadline_exceeded) and revoked: the "
                                         "work it queued was lost (e.g. an unpersisted broker "
                                         "restarted). Default: past any root token's lifetime "
                                         "plus a hop's time limit.")
    idempotency_ttl_seconds: int = Field(
        86400, ge=60, le=30 * 86400,
        description="How long a service keeps the answer to a request made under an "
                    "Idempotency-Key: a retry within it gets that answer (same status and "
                    "body) and changes nothing. Kept in Redis (redis_url) with this expiry, so "
                    "a serve restart keeps them and Redis memory stays bounded (about 1 KB an "
                    "answer); in process otherwise. Must outlast a run's retries "
                    "(run_deadline_seconds).")
    revocation_stale_seconds: int = Field(
        0, ge=0, le=60, description="How long a service may cache a 'not revoked' answer."
    )

    webhook_secret: SecretStr = Field(SecretStr("infrabot-dev-webhook-secret"))
    static_token: SecretStr | None = Field(
        None, description="Baseline only: one long-lived, over-permissioned service token the "
                          "services accept and static-mode runs use instead of delegation. "
                          "Off unless set; the demo and the benchmarks set it to compare.")
    log_level: str = "INFO"

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.signing_alg not in self.allowed_algs:
            raise ValueError("signing_alg must be one of allowed_algs")
        if self.root_token_ttl_seconds < self.token_ttl_seconds:
            raise ValueError("root_token_ttl_seconds must be >= token_ttl_seconds")
        if self.idempotency_ttl_seconds < self.run_deadline_seconds:
            raise ValueError("idempotency_ttl_seconds must be >= run_deadline_seconds: a run's "
                             "retry must still find its first answer")
        return self

    @property
    def auth_url(self) -> str:
        return f"http://{self.host}:{self.auth_port}"

    @property
    def issuer_url(self) -> str:
        return self.issuer or self.auth_url

    def service_url(self, name: str) -> str:
        return f"http://{self.host}:{getattr(self, f'{name}_port')}"

    @property
    def keys_dir(self) -> Path:
        return self.state_dir / "keys"

    @property
    def audit_db(self) -> Path:
        return self.state_dir / "audit.sqlite3"

    @property
    def endpoints_file(self) -> Path:
        return self.state_dir / "endpoints.json"
