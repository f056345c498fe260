"""The one settings object. Built once at the edge (CLI, worker, server start-up) and passed down.

Every field is read from an ``INFRABOT_<FIELD>`` environment variable; nothing below the edge
reads the environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_core.core_schema import ValidationInfo
from pydantic_settings import BaseSettings, SettingsConfigDict

from orchestrator import _urls as urls
from orchestrator._broker_tls import split_tls
from orchestrator._log import LogLevel
from orchestrator._service_latency import ServiceLatency, ServiceLatencySetting
from orchestrator._webhook_secret import check_webhook_secret
from orchestrator.db import store_target

SigningAlg = Literal["ES256", "RS256", "EdDSA"]

_REPO_WORKFLOWS = Path(__file__).resolve().parent.parent / "workflows"

SERVICE_NAMES = ("datadog", "github", "aws", "pagerduty")
_AUTH_URL = "INFRABOT_AUTH_DATABASE_URL"  # the auth database's; unset, INFRABOT_DATABASE_URL's

# A retried hop's longest countdown (agents/tasks.py); the visibility timeout's lead on a hop.
RETRY_COUNTDOWN_CAP = 8
VISIBILITY_MARGIN = RETRY_COUNTDOWN_CAP + 3

BrokerKind = Literal["amqp", "redis", "memory"]
# A broker URL's scheme -> the broker it names (docs/reliability.md).
BROKER_SCHEMES: dict[str, BrokerKind] = {
    "amqp": "amqp", "amqps": "amqp", "pyamqp": "amqp", "redis": "redis", "rediss": "redis",
    "memory": "memory"}


# Settings checked by a function of their own: it names the shape, never quotes the value.
_CHECKS = {"database_url": urls.check_database_url, "auth_database_url": urls.check_database_url,
           "redis_url": urls.check_redis_url, "host": urls.check_host,
           "issuer": urls.check_issuer_url, "otlp_endpoint": urls.check_otlp_url,
           "webhook_secret": check_webhook_secret}


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
    service_ports: dict[str, int] = Field(
        {}, description="Ports of the services declared by OpenAPI documents in the workflows "
                        "directory, by name (JSON: {\"chat\": 8706}); one not named listens on "
                        "a port the OS picks (endpoints.json says which).")
    issuer: str | None = Field(None, description="Defaults to the auth server's base URL.")
    service_latency_ms: ServiceLatencySetting = Field(
        ServiceLatency(), description="Each mock service's wait before answering (docs/design.md).")

    signing_alg: SigningAlg = "ES256"
    allowed_algs: tuple[SigningAlg, ...] = ("ES256", "RS256", "EdDSA")
    token_ttl_seconds: int = Field(600, ge=1, le=900, description="Exchanged token lifetime cap.")
    root_token_ttl_seconds: int = Field(900, ge=1, le=900, description="Root token of a run.")
    leeway_seconds: int = Field(5, ge=0, le=60)
    max_depth: int = Field(4, ge=1, le=16, description="Maximum number of actors in a chain.")
    max_token_bytes: int = Field(8192, ge=512, le=65536)
    assertion_max_lifetime_seconds: int = Field(
        3600, ge=10, le=3600,
        description="Longest a client or grant assertion may live (RFC 7523 exp); one hour, "
                    "Authlib's default and Okta's bound. Each jti is kept until its exp.")

    dpop_binding: bool = Field(
        True, description="Bind every token to a DPoP key (RFC 9449): service tokens to the "
                          "requesting agent's key, hand-offs to the next agent's. A service may "
                          "still take unbound tokens (directory: dpop: optional) or require "
                          "binding when this is off (dpop: required).")
    dpop_proof_max_age_seconds: int = Field(
        60, ge=5, le=300, description="How old a DPoP proof's iat may be; its jti is held in "
                                      "the shared registry this long (plus the leeway).")
    dpop_nonce: bool = Field(
        True, description="The authorization server requires its own DPoP-Nonce in proofs, so "
                          "a proof made in advance expires with the nonce (2 minutes).")
    delegation_records: bool = Field(
        True, description="Agents sign a delegation record with every hand-off, so the token "
                          "carries a delegation_chain confirmed by every delegator "
                          "(docs/delegation-chain.md). false: hand-offs are unconfirmed, and a "
                          "service whose directory entry says delegation: required refuses "
                          "their tokens (unconfirmed_delegation).")
    overlap_hops: bool = Field(False, description="Ask for the next step's token while a call "
                               "is in flight (docs/journal.md, Overlapped hops); off: measured, "
                               "it did not pay with the servers in one process.")
    dpop_key_registration_seconds: int = Field(
        86400, ge=60, le=7 * 86400,
        description="How long an agent's DPoP key registration lasts (`POST /dpop_keys`'s "
                    "`expires_in`; agents renew at half of it): in serve's client registry (32 "
                    "keys an agent at most, the oldest dropped), else in the shared registry. "
                    "`infrabot keys revoke dpop:AGENT KID` ends one for good.")

    database_url: SecretStr | None = Field(
        None, description="The run log, which serve and the workers share: postgresql://user@"
                          "host:port/db or sqlite:///dir (runs.sqlite3 in dir); also the audit "
                          "trail and the client registry unless auth_database_url is set; "
                          "unset, SQLite files in the state directory.")
    auth_database_url: SecretStr | None = Field(
        None, description="The authorization server's own database (same forms): the audit "
                          "trail and the client registry, on credentials only the auth host "
                          "holds (docs/deploy.md); unset, database_url's.")
    # Never in a repr (a URL may hold a password): a settings object printed shows neither.
    redis_url: str | None = Field(
        None, repr=False, description="Revocation registry and replay cache (the auth host "
                                      "only); in-process when unset.")
    broker_url: str = Field("memory://localhost/", repr=False,
                            description="Celery broker: amqp://... (RabbitMQ, production) or "
                                        "redis://... for distributed; memory:// embedded.")
    hop_time_limit_seconds: int = Field(
        30, ge=10, le=600, description="A worker ends a hop still running this long (Celery).")
    visibility_timeout_seconds: int = Field(
        120, ge=21, le=3600, description="Redis broker only: how long an unacknowledged message "
                                         "(a worker lost mid-hop) waits before a worker's sweep "
                                         "(every 5 s) redelivers it. At least a hop's time limit "
                                         f"plus {VISIBILITY_MARGIN} s (its longest retry wait).")
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

    audit_checkpoint_records: int = Field(
        1000, ge=1, le=1_000_000, description="A writer signs a checkpoint of its audit chain "
                                              "after this many records (and at the end of each "
                                              "run in its process, and when it stops cleanly).")
    audit_checkpoint_seconds: float = Field(
        10.0, gt=0, le=3600, description="...and at most this many seconds after a record it "
                                         "appended, so no record stays unanchored longer.")

    webhook_secret: SecretStr | None = Field(
        None, description="HMAC-SHA256 key of the CI webhooks (at least 16 characters). Unset: "
                          "`serve` generates one into <state_dir>/webhook_secret (mode 0600) on "
                          "first start and reuses it; `simulate` reads it from there.")
    static_token: SecretStr | None = Field(
        None, description="Baseline only: one long-lived, over-permissioned service token the "
                          "services accept and static-mode runs use instead of delegation. "
                          "Off unless set; the demo and the benchmarks set it to compare.")
    log_level: LogLevel = Field("INFO", description="DEBUG, INFO, WARNING, ERROR or CRITICAL.")
    tracing: bool = Field(True, description="OpenTelemetry traces of every run (docs/tracing.md)"
                                            ": exported over OTLP when otlp_endpoint is set, "
                                            "else kept in the run log.")
    otlp_endpoint: str | None = Field(
        None, validation_alias=AliasChoices("otlp_endpoint", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                                            "OTEL_EXPORTER_OTLP_ENDPOINT"),
        description="The standard OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT: spans go there over "
                    "OTLP/HTTP (the exporter reads the other OTEL_* variables itself).")

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.signing_alg not in self.allowed_algs:
            raise ValueError("signing_alg must be one of allowed_algs")
        if self.root_token_ttl_seconds < self.token_ttl_seconds:
            raise ValueError("root_token_ttl_seconds must be >= token_ttl_seconds")
        if self.idempotency_ttl_seconds < self.run_deadline_seconds:
            raise ValueError("idempotency_ttl_seconds must be >= run_deadline_seconds: a run's "
                             "retry must still find its first answer")
        if self.broker_kind == "redis" \
                and self.visibility_timeout_seconds < self.hop_time_limit_seconds + VISIBILITY_MARGIN:
            raise ValueError(f"visibility_timeout_seconds must be >= hop_time_limit_seconds + "
                             f"{VISIBILITY_MARGIN}: a hop must never come back while it runs")
        return self

    @field_validator(*_CHECKS)
    @classmethod
    def _check_value(cls, value: Any, info: ValidationInfo) -> Any:
        """A URL or a secret of the shape its setting needs (:data:`_CHECKS`). The OTLP
        endpoint is the one setting other programs share (the standard ``OTEL_*`` variables):
        with tracing off nothing exports to it, so it is not checked."""
        if info.field_name == "otlp_endpoint" and not info.data.get("tracing", True):
            return value
        if value is not None:
            _CHECKS[str(info.field_name)](
                value.get_secret_value() if isinstance(value, SecretStr) else value)
        return value

    @field_validator("service_ports")
    @classmethod
    def _ports(cls, value: dict[str, int]) -> dict[str, int]:
        bad = next((n for n, p in value.items() if not 0 <= p <= 65535 or n in SERVICE_NAMES),
                   None)
        if bad is not None:
            raise ValueError(f"{bad}: a declared service's port, from 0 to 65535 (the built-in "
                             "services have their own settings)")
        return value

    @field_validator("broker_url")
    @classmethod
    def _known_broker(cls, url: str) -> str:
        if url.split("://", 1)[0].lower() not in BROKER_SCHEMES:
            raise ValueError("not a broker URL: use amqp:// (RabbitMQ), redis:// or memory://")
        if url.split("://", 1)[0].lower() in ("redis", "rediss"):
            urls.check_redis_url(split_tls(url)[0])
        if url.split("://", 1)[0].lower() in ("amqp", "amqps"):
            urls.check_amqp_url(split_tls(url)[0])
        split_tls(url)  # a bad TLS parameter or a missing certificate file: said at start
        return url

    @property
    def broker_tls(self) -> dict[str, Any] | None:
        """For a ``rediss://`` or ``amqps://`` broker, Celery's ``broker_use_ssl``: the URL's
        ``ssl_*`` parameters, the server's certificate and name verified unless they say
        otherwise (orchestrator/_broker_tls.py). None for any other broker."""
        _, tls = split_tls(self.broker_url)
        scheme = self.broker_url.split("://", 1)[0].lower()
        return tls.options(scheme) if tls else None

    @property
    def broker_connection_url(self) -> str:
        """``broker_url`` without its ``ssl_*`` parameters, which :attr:`broker_tls` carries."""
        return split_tls(self.broker_url)[0]

    @property
    def broker_kind(self) -> BrokerKind:
        """The broker ``broker_url`` names: ``amqp`` (RabbitMQ), ``redis`` or ``memory``."""
        return BROKER_SCHEMES[self.broker_url.split("://", 1)[0].lower()]

    @property
    def auth_url(self) -> str:
        return f"http://{self.host}:{self.auth_port}"

    @property
    def issuer_url(self) -> str:
        return self.issuer or self.auth_url

    def service_url(self, name: str) -> str:
        """The base URL (and audience) of a built-in or a declared service."""
        port = (getattr(self, f"{name}_port") if name in SERVICE_NAMES
                else self.service_ports.get(name, 0))
        return f"http://{self.host}:{port}"

    @property
    def keys_dir(self) -> Path:
        return self.state_dir / "keys"

    @property
    def audit_keys_dir(self) -> Path:
        """The audit key that signs checkpoints (never in the database) and its public keys."""
        return self.keys_dir / "audit"

    @property
    def audit_db(self) -> Path:
        return self.state_dir / "audit.sqlite3"

    @property
    def audit_target(self) -> Path | str:
        """The audit trail's database: a SQLite file path or a PostgreSQL URL."""
        return self._store_target(self.audit_db, auth=True)

    @property
    def runs_target(self) -> Path | str:
        """The run log's database: a SQLite file path or a PostgreSQL URL."""
        return self._store_target(self.state_dir / "runs.sqlite3", auth=False)

    @property
    def registry_target(self) -> Path | str:
        """The client registry's database once ``auth_database_url`` or ``database_url`` is set
        (unset, the registry is ``keys/client_registry.json`` in the state directory)."""
        return self._store_target(self.state_dir / "clients.sqlite3", auth=True)

    def _store_target(self, default: Path, *, auth: bool) -> Path | str:
        """``auth``: a store of the auth database's, so ``auth_database_url``'s, else (unset)
        ``database_url``'s; a URL keeps the name of its setting, for messages."""
        if auth and self.auth_database_url is not None:
            return store_target(default, self.auth_database_url.get_secret_value(), _AUTH_URL)
        url = self.database_url.get_secret_value() if self.database_url is not None else None
        return store_target(default, url, "INFRABOT_DATABASE_URL", _AUTH_URL if auth else None)

    @property
    def endpoints_file(self) -> Path:
        return self.state_dir / "endpoints.json"
