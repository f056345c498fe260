"""A RabbitMQ node of the test's own that listens with TLS only (bench/_servers.py's node, on
spare ports, data under the test's directory), never the machine's."""

from __future__ import annotations

import ssl
from dataclasses import dataclass

from kombu import Connection

from bench._servers import RabbitNode
from tests._tls import ServerCertificate


@dataclass
class TlsRabbitNode(RabbitNode):
    tls: ServerCertificate | None = None

    def env(self) -> dict[str, str]:
        env = super().env()
        assert self.tls is not None
        (self.root / "rabbitmq.conf").write_text(
            "listeners.tcp = none\n"
            f"listeners.ssl.default = 127.0.0.1:{self.port}\n"
            f"ssl_options.cacertfile = {self.tls.ca}\n"
            f"ssl_options.certfile = {self.tls.cert}\n"
            f"ssl_options.keyfile = {self.tls.key}\n"
            "ssl_options.verify = verify_none\n"
            "ssl_options.fail_if_no_peer_cert = false\n")
        return env

    @property
    def url(self) -> str:
        assert self.tls is not None
        return f"amqps://guest:guest@127.0.0.1:{self.port}//?ssl_ca_certs={self.tls.ca}"

    def connection(self) -> Connection:
        assert self.tls is not None
        return Connection(f"amqps://guest:guest@127.0.0.1:{self.port}//", connect_timeout=1,
                          ssl={"ca_certs": str(self.tls.ca), "cert_reqs": ssl.CERT_REQUIRED})
