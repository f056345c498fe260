"""The CI event a run is rooted in, whatever webhook it came from.

Every field is bounded and pattern-checked here, because each one flows into a token's ``ctx``
claim, the run log and the audit trail. Nothing shaped like a raw JWT survives validation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator, model_validator

from orchestrator.audit import contains_raw_jwt
from orchestrator.errors import InfraBotError

EventType = Literal["deployment", "workflow_run", "user_request"]
# user_request: a person's own identity-provider token (POST /runs); the context rules treat it
# as they treat manual (only ci_pipeline satisfies a rule that requires CI).
Trigger = Literal["ci_pipeline", "manual", "user_request"]

# GitHub logins: alphanumerics and single hyphens, at most 39; apps end in "[bot]".
LOGIN_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9-]{0,38}(\[bot\])?$"
# A directory id, or (from a "[bot]" login) one no directory can hold: refused as unknown_user.
USER_PATTERN = r"^user:[a-z0-9][a-z0-9_.-]{0,63}(\[bot\])?$"
REPOSITORY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,38}/[A-Za-z0-9_.-]{1,100}$"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
COMMIT_PATTERN = r"^[0-9a-fA-F]{7,40}$"
DELIVERY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$"


class MalformedEvent(InfraBotError):
    """A webhook body that is not the event it says it is; ``field`` names the wrong part."""

    reason = "malformed_event"

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Ignored:
    """A well-formed event that starts no run (a failed workflow run, a non-created action)."""

    reason: str


def user_for_login(login: str) -> str:
    """The directory id for a GitHub login: ``user:<login>``, lower-cased (logins are
    case-insensitive on GitHub)."""
    return f"user:{login.lower()}"


class CIEvent(BaseModel):
    """A CI event that may start a run: who deployed what, where, and how it was triggered."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    delivery_id: str = Field(pattern=DELIVERY_PATTERN)
    event_type: EventType
    user: str = Field(pattern=USER_PATTERN)
    sender_login: str | None = Field(None, pattern=LOGIN_PATTERN)  # None: not from GitHub
    repository: str = Field(pattern=REPOSITORY_PATTERN)
    service: str = Field(pattern=NAME_PATTERN)
    environment: str = Field(pattern=NAME_PATTERN)
    commit: str = Field(pattern=COMMIT_PATTERN)
    trigger: Trigger
    pr: StrictInt | None = Field(None, ge=1, le=10**9)
    ref: str | None = Field(None, min_length=1, max_length=255, pattern=r"^[^\s\x00-\x1f]+$")
    task: str = Field("deploy", pattern=r"^[a-z][a-z0-9-]{0,63}$",
                      description="GitHub deployment task (deploy, rollback, ...); selects "
                                  "the workflow")
    idp: str | None = Field(None, max_length=256, description="The identity provider that "
                            "vouched for the user (user_request only).")

    @field_validator("commit")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.lower()

    @model_validator(mode="before")
    @classmethod
    def _no_raw_token(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name, value in data.items():
                if isinstance(value, str) and contains_raw_jwt(value):
                    raise ValueError(f"{name} looks like a raw JWT")
        return data

    @property
    def context(self) -> dict[str, str]:
        """The event as an audit/token context (without the run id)."""
        out = {"trigger": self.trigger, "environment": self.environment,
               "repository": self.repository, "commit": self.commit}
        return {**out, "idp": self.idp} if self.idp else out
