"""The checks of the settings' URLs that may hold a password (``INFRABOT_DATABASE_URL``,
``INFRABOT_REDIS_URL``, ``INFRABOT_BROKER_URL``, the OTLP endpoint), and of the host and
issuer every URL the servers publish is made of: a ValueError that names the expected shape and
never quotes the value, so a bad one is one line at start (a password with an unencoded ``/``
would otherwise reach a client's parser, whose error quotes part of it)."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

REDIS_SHAPE = "must be redis://[:password@]host:port/db (or rediss://, unix://)"


def check_database_url(url: str) -> None:
    """ValueError (never quoting the URL: it may hold a password) unless ``url`` names a
    PostgreSQL database or a SQLite directory."""
    shape = "must be postgresql://user@host:port/db or sqlite:///directory"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ValueError(f"{shape} (it does not parse as a URL)") from None
    if parts.scheme in ("postgresql", "postgres"):
        if not parts.hostname or not parts.path.strip("/") or port == 0:
            raise ValueError(f"{shape} (a host and a database name are required)")
    elif parts.scheme == "sqlite":
        if parts.netloc or not parts.path or parts.query:
            raise ValueError(f"{shape} (sqlite:/// then an absolute directory path)")
    else:
        raise ValueError(shape)


def check_redis_url(url: str) -> None:
    """ValueError (never quoting the URL) unless ``url`` is a Redis URL with a host, a port
    that is a number, and a database number if a path is given."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - parsing the port is the check
    except ValueError:
        raise ValueError(f"{REDIS_SHAPE} (it does not parse as a URL: a password's reserved "
                         "characters, such as '/', must be percent-encoded)") from None
    if parts.scheme == "unix":
        if not parts.path:
            raise ValueError(f"{REDIS_SHAPE} (unix:// then the socket's path)")
    elif parts.scheme in ("redis", "rediss"):
        db = parts.path.strip("/")
        if not parts.hostname or (db and not db.isdigit()):
            raise ValueError(f"{REDIS_SHAPE} (a host, and a database number if a path is given)")
    else:
        raise ValueError(REDIS_SHAPE)


def check_otlp_url(url: str) -> None:
    """An OTLP/HTTP endpoint: http(s), a host, a numeric port if any (empty means unset)."""
    try:
        parts = urlsplit(url)
        good = not url or (parts.scheme in ("http", "https") and bool(parts.hostname)
                           and parts.port != 0)  # reading the port parses it
    except ValueError:
        good = False
    if not good:
        raise ValueError("must be an http:// or https:// URL with a host (e.g. "
                         "http://localhost:4318)")


def check_amqp_url(url: str) -> None:
    """ValueError (never quoting the URL) unless ``url`` parses as an AMQP URL whose port, if
    given, is a number: a password with an unencoded ``/`` would otherwise be read as the port,
    and the client's error quotes it."""
    try:
        urlsplit(url).port  # noqa: B018 - parsing the port is the check
    except ValueError:
        raise ValueError("must be amqp://user:password@host:port/vhost (or amqps://) (it does "
                         "not parse as a URL: a password's reserved characters, such as '/', "
                         "must be percent-encoded)") from None


# A host name (RFC 1123 labels) or an IPv4 address, which is one
_HOST = re.compile(r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                   r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*")


def check_host(host: str) -> None:
    """ValueError unless ``host`` is a host name or an IPv4 address, to bind and to put in
    URLs; an empty one would bind every interface and give URLs no host."""
    if not _HOST.fullmatch(host):
        raise ValueError("must be a host name or an IPv4 address, such as 127.0.0.1 (not "
                         "empty: that would bind every interface)")


def check_issuer_url(url: str) -> None:
    """ValueError unless ``url`` is an issuer identifier (RFC 8414 section 2): a URL with a
    host and no query or fragment; https in production (http is allowed, for a deployment on
    loopback or a private network)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("https", "http") or not parts.hostname \
            or parts.query or "#" in url:
        raise ValueError("must be an https:// (or http://) URL with a host and no query or "
                         "fragment (RFC 8414 section 2)")
