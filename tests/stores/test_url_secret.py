"""A database URL's password never reaches an error message, even where the driver quotes the
part of a connection string it cannot parse (no server needed: these fail while parsing)."""

from __future__ import annotations

import pytest

from orchestrator.audit import AuditStore
from orchestrator.errors import ConfigError


@pytest.mark.parametrize("url, secret", [
    ("postgresql://app:pa ss word@127.0.0.1:5432/db", "pa ss word"),
    ("postgresql://app:s%zzecret@127.0.0.1:5432/db", "zzecret"),
    ("postgresql://app:hunter2@127.0.0.1:1/db", "hunter2"),  # refused: nothing listens there
])
def test_the_password_is_not_in_the_error(url: str, secret: str) -> None:
    with pytest.raises(ConfigError) as raised:
        AuditStore(url)
    message = str(raised.value)
    assert secret not in message and "app:" not in message, message
    assert len(message.splitlines()) == 1
