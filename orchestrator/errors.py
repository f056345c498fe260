"""One exception tree for the whole project.

::

    InfraBotError
    ├── ConfigError                 bad settings, directory or workflow files (names file and line)
    ├── PredatesMemory              a one-time claim for what was issued before the replay
    │                               registry's memory began; the caller answers it as its own
    │                               OAuth error (``assertion_predates_registry``)
    ├── InternalError               a bug (not an error raised on purpose) that stopped a run's
    │                               start once the run was created, raised from it so that the
    │                               caller learns the run; answered 500 ``internal_error``
    ├── OAuthError                  carries an RFC error code, an HTTP status and a reason code
    │   ├── InvalidRequest          400 invalid_request      (RFC 6749 5.2 / RFC 6750 3.1)
    │   │   ├── BodyTimeout         408 invalid_request      (RFC 9110 15.5.9: the body came
    │   │   │                       too slowly to be read)
    │   │   ├── BodyTooLarge        413 invalid_request      (RFC 9110 15.5.14: the body is, or
    │   │   │                       says it is, over the server's limit)
    │   │   └── ClientDisconnected  499 (recorded only: the client closed mid-body; nginx's code)
    │   ├── InvalidClient           401 invalid_client       (RFC 6749 5.2)
    │   ├── InvalidGrant            400 invalid_grant        (RFC 6749 5.2)
    │   ├── UnauthorizedClient      400 unauthorized_client  (RFC 6749 5.2)
    │   ├── UnsupportedGrantType    400 unsupported_grant_type
    │   ├── UnsupportedTokenType    400 unsupported_token_type (RFC 7009 2.2.1)
    │   ├── InvalidScope            400 invalid_scope        (RFC 6749 5.2)
    │   ├── InvalidTarget           400 invalid_target       (RFC 8693 2.2.2)
    │   ├── InvalidToken            401 invalid_token        (RFC 6750 3.1)
    │   ├── InvalidDPoPProof        400 invalid_dpop_proof   (RFC 9449 5, 7.1; 401 at a service)
    │   ├── UseDPoPNonce            400 use_dpop_nonce       (RFC 9449 8, 9)
    │   └── InsufficientScope       403 insufficient_scope   (RFC 6750 3.1)
    └── TransientError              worth retrying: the fault is not the request's
        └── Unavailable             503 temporarily_unavailable: a dependency (revocation
                                    registry, key set, service) cannot be reached; callers
                                    fail closed and may retry

Every error has a ``reason``: a short snake_case code more specific than the RFC code
(``token_expired``, ``audience_mismatch``, ``scope_not_grantable`` ...). Messages never contain a
token or a key. An error that stops a run's start after the run was created names the run in
``run_id`` (None otherwise), so a receiver's refusal is audited under the run it ended. The JSON
body of an error answer is built in one place, :meth:`OAuthError.body`.
"""

from __future__ import annotations

from typing import Any, ClassVar


class InfraBotError(Exception):
    """Root of every error this project raises on purpose."""

    reason: str = "error"
    run_id: str | None = None  # the run this stopped the start of, once it was created

    def __init__(self, message: str, *, reason: str | None = None,
                 run_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason
        if run_id is not None:
            self.run_id = run_id


class ConfigError(InfraBotError):
    """A settings value, directory file or workflow file is wrong; the message says where."""

    reason = "bad_configuration"


class StoreMissing(ConfigError):
    """A store opened read-only has not been made yet (no file, or not one of its tables; some
    but not all is a :class:`ConfigError`): the process that owns it makes it, a reader cannot."""

    reason = "store_missing"


class PredatesMemory(InfraBotError):
    """A one-time claim (an assertion's) for something issued before the registry's memory began:
    a claim made for it then would be forgotten (an unpersisted Redis restarted), so whether this
    is its first use cannot be told."""

    reason = "predates_registry"

    def __init__(self) -> None:
        super().__init__("issued before the replay registry's memory began")


class InternalError(InfraBotError):
    """Something not raised on purpose (a bug) stopped a run's start after the run was created:
    raised from it, naming the run (``run_id``), which was ended ``failed`` (or, when the run log
    refused that too, left to the run deadline)."""

    reason = "internal_error"


class OAuthError(InfraBotError):
    """An error with an RFC 6749 / 6750 / 7009 / 8693 code."""

    code: ClassVar[str] = "invalid_request"
    status: ClassVar[int] = 400

    def body(self) -> dict[str, Any]:
        """The RFC 6749 section 5.2 JSON error body, plus our reason code."""
        return {"error": self.code, "error_description": self.message, "reason": self.reason}


class InvalidRequest(OAuthError):
    code = "invalid_request"
    status = 400
    reason = "invalid_request"


class BodyTimeout(InvalidRequest):
    """The request's body had not arrived whole within the server's deadline."""

    status = 408
    reason = "body_timeout"


class BodyTooLarge(InvalidRequest):
    """The request's body is, or declares it is, longer than the server reads."""

    status = 413
    reason = "body_too_large"


class ClientDisconnected(InvalidRequest):
    """The client closed the connection before its body was read: no answer reaches it, so
    only its audit record carries this status."""

    status = 499
    reason = "client_disconnected"


class InvalidClient(OAuthError):
    code = "invalid_client"
    status = 401
    reason = "client_authentication_failed"


class InvalidGrant(OAuthError):
    code = "invalid_grant"
    status = 400
    reason = "invalid_grant"


class UnauthorizedClient(OAuthError):
    code = "unauthorized_client"
    status = 400
    reason = "client_not_allowed"


class UnsupportedGrantType(OAuthError):
    code = "unsupported_grant_type"
    status = 400
    reason = "unsupported_grant_type"


class UnsupportedTokenType(OAuthError):
    code = "unsupported_token_type"
    status = 400
    reason = "unsupported_token_type"


class InvalidScope(OAuthError):
    code = "invalid_scope"
    status = 400
    reason = "scope_not_grantable"


class InvalidTarget(OAuthError):
    code = "invalid_target"
    status = 400
    reason = "unknown_target"


class InvalidToken(OAuthError):
    code = "invalid_token"
    status = 401
    reason = "invalid_token"


class InvalidDPoPProof(OAuthError):
    """A DPoP proof (RFC 9449) that is missing, malformed, or does not match the request, the
    token or the key the token is bound to. A service answers it 401 with a ``DPoP``
    challenge."""

    code = "invalid_dpop_proof"
    status = 400
    reason = "invalid_dpop_proof"


class UseDPoPNonce(OAuthError):
    """The server wants a proof carrying the nonce it provides (RFC 9449 section 8)."""

    code = "use_dpop_nonce"
    status = 400
    reason = "use_dpop_nonce"


class DPoPRefusal(OAuthError):
    """A protected resource's refusal answered 401 with a ``DPoP`` challenge (RFC 9449 section
    7.1): the token may not be used as presented."""

    code = "invalid_token"
    status = 401


class ProofRefusal(DPoPRefusal):
    """A protected resource's refusal of the request's DPoP proof: missing, invalid, replayed
    or by another key."""

    code = "invalid_dpop_proof"


class NonceRefusal(DPoPRefusal):
    """A protected resource wants a proof with the nonce its ``DPoP-Nonce`` header gives
    (RFC 9449 section 9)."""

    code = "use_dpop_nonce"


class InsufficientScope(OAuthError):
    code = "insufficient_scope"
    status = 403
    reason = "insufficient_scope"


class TransientError(InfraBotError):
    """A fault that is not the request's: a retry may succeed."""

    reason = "transient"


class Unavailable(TransientError):
    """A dependency cannot be reached. Checks that need it fail closed."""

    code: ClassVar[str] = "temporarily_unavailable"
    status: ClassVar[int] = 503
    reason = "dependency_unavailable"

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "error_description": self.message, "reason": self.reason}
