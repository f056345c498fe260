"""TLS for the broker's connections (``rediss://`` and ``amqps://``), from the broker URL's
``ssl_*`` parameters, the names redis-py reads in ``INFRABOT_REDIS_URL``:

``ssl_ca_certs``  the CA certificates (PEM file) the server's certificate must chain to; default:
                  the system's;
``ssl_certfile``, ``ssl_keyfile``  a client certificate and its key, for a broker that asks;
``ssl_cert_reqs``  ``required`` (default), ``optional`` or ``none`` (no verification at all);
``ssl_check_hostname``  ``true`` (default) or ``false``: the certificate must name the host.

The server's certificate and name are verified unless the URL says otherwise; kombu alone would
verify neither on ``rediss://`` and not the name on ``amqps://``. The parameters are taken out of
the URL given to kombu (which would pass them on under names py-amqp does not know) and handed
over as Celery's ``broker_use_ssl``, spelled for the broker's client library.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

TLS_SCHEMES = ("rediss", "amqps")
_FILES = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")
_KNOWN = (*_FILES, "ssl_cert_reqs", "ssl_check_hostname")
_REQS = {"required": ssl.CERT_REQUIRED, "optional": ssl.CERT_OPTIONAL, "none": ssl.CERT_NONE}
_BOOLS = {"true": True, "false": False}


@dataclass(frozen=True)
class BrokerTLS:
    """What one broker URL asks of TLS."""

    ca_certs: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    cert_reqs: ssl.VerifyMode = ssl.CERT_REQUIRED
    check_hostname: bool = True

    def options(self, scheme: str) -> dict[str, Any]:
        """``broker_use_ssl`` for ``scheme``: redis-py's names, or py-amqp's."""
        check = self.check_hostname and self.cert_reqs != ssl.CERT_NONE
        if scheme == "rediss":
            named = {"ssl_ca_certs": self.ca_certs, "ssl_certfile": self.certfile,
                     "ssl_keyfile": self.keyfile}
            return {"ssl_cert_reqs": self.cert_reqs, "ssl_check_hostname": check,
                    **{k: v for k, v in named.items() if v is not None}}
        named = {"ca_certs": self.ca_certs, "certfile": self.certfile, "keyfile": self.keyfile}
        # server_hostname None: kombu fills in the URL's host, which turns the name check on
        return {"cert_reqs": self.cert_reqs, **({"server_hostname": None} if check else {}),
                **{k: v for k, v in named.items() if v is not None}}


def split_tls(url: str) -> tuple[str, BrokerTLS | None]:
    """The URL without its ``ssl_*`` parameters, and its TLS (None unless a TLS scheme).
    ``ValueError`` (one line) for an unknown parameter, a bad value or a missing file."""
    parts = urlsplit(url)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    given = {k: v for k, v in pairs if k.startswith("ssl_")}
    rest = urlunsplit(parts._replace(query=urlencode([(k, v) for k, v in pairs
                                                      if not k.startswith("ssl_")])))
    if parts.scheme.lower() not in TLS_SCHEMES:
        if given:
            raise ValueError(f"{min(given)}: TLS parameters need rediss:// or amqps://")
        return url, None
    for name, value in given.items():
        if name not in _KNOWN:
            raise ValueError(f"{name}: not a TLS parameter (known: {', '.join(_KNOWN)})")
        if name in _FILES and not Path(value).is_file():
            raise ValueError(f"{name}: no such file: {value}")
    reqs = given.get("ssl_cert_reqs", "required").lower()
    check = given.get("ssl_check_hostname", "true").lower()
    if reqs not in _REQS:
        raise ValueError("ssl_cert_reqs: use required, optional or none")
    if check not in _BOOLS:
        raise ValueError("ssl_check_hostname: use true or false")
    return rest, BrokerTLS(given.get("ssl_ca_certs"), given.get("ssl_certfile"),
                           given.get("ssl_keyfile"), _REQS[reqs], _BOOLS[check])

