"""The CI webhook secret's rule, for ``INFRABOT_WEBHOOK_SECRET`` and for the secret file in the
state directory alike: never the old public default, never short."""

from __future__ import annotations

# The webhook secret every install once shared by default: public, so never accepted.
PUBLIC_WEBHOOK_SECRET = "infrabot-dev-webhook-secret"
MIN_WEBHOOK_SECRET_CHARS = 16


def check_webhook_secret(value: str) -> None:
    """Refuse a webhook secret anyone could know or guess (the old public default, too short)."""
    if value.strip() == PUBLIC_WEBHOOK_SECRET:
        raise ValueError("is the old public default, which anyone can sign with; unset it "
                         "(serve then generates one) or set a random secret")
    if len(value.strip()) < MIN_WEBHOOK_SECRET_CHARS:
        raise ValueError(f"must be at least {MIN_WEBHOOK_SECRET_CHARS} characters")
