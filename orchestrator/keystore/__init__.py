"""The keys on disk: the adapter that keeps the trust core's keys (:mod:`orchestrator.identity`,
which holds them only as values) in files of the state directory, owner-only.

* :class:`KeyRing`: the issuer's signing keys, with rotation (``keys/signing``).
* The clients' own key pairs for ``private_key_jwt`` (``keys/clients``): :func:`client_key`,
  :func:`init_client_key`, :func:`load_client_key`.
* :func:`write_private`, :func:`read_private` and :func:`locked`: every private key file of the
  project (the audit key and the agents' DPoP keys too) is written and read through these.
"""

from orchestrator.keystore._clients import (
    ClientKeyInit,
    client_key,
    client_key_path,
    client_keys_dir,
    init_client_key,
    load_client_key,
)
from orchestrator.keystore._files import locked, read_private, write_private
from orchestrator.keystore._keyring import KeyRing

__all__ = [
    "ClientKeyInit",
    "KeyRing",
    "client_key",
    "client_key_path",
    "client_keys_dir",
    "init_client_key",
    "load_client_key",
    "locked",
    "read_private",
    "write_private",
]
