"""The mock services' latency setting (``INFRABOT_SERVICE_LATENCY_MS``, docs/design.md §5): its
value and its written form. :class:`~orchestrator.config.Settings` holds it; the mock services
wait it (``mock_services/_latency.py``)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_settings import NoDecode

from orchestrator.errors import ConfigError

MAX_SERVICE_LATENCY_MS = 10_000  # a hop's two steps at this stay well inside its 30 s limit
_LATENCY_ENTRY = re.compile(r"^(?:(?P<service>[a-z][a-z0-9]{0,31})=)?(?P<ms>[0-9]+)$")


class ServiceLatency(BaseModel):
    """How long the mock services take to answer each API call, as a real one would: every
    service ``default_ms``, those named in ``by_service`` their own. 0 (the default): at once.

    Written ``50`` (every service), ``datadog=120,github=80`` (those two; the others at once)
    or ``50,datadog=120`` (every service 50 ms, Datadog 120 ms)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    default_ms: int = Field(0, ge=0, le=MAX_SERVICE_LATENCY_MS)
    by_service: dict[str, Annotated[int, Field(ge=0, le=MAX_SERVICE_LATENCY_MS)]] = {}

    @classmethod
    def parse(cls, text: str) -> ServiceLatency:
        """From the written form (empty: none); ValueError saying which entry is wrong."""
        if not text.strip():
            return cls()
        default: int | None = None
        by_service: dict[str, int] = {}
        for entry in (e.strip() for e in text.split(",")):
            found = _LATENCY_ENTRY.match(entry)
            if found is None:
                raise ValueError(f"{entry!r} is neither milliseconds (50) nor service=milliseconds"
                                 " (datadog=120)")
            service, ms = found["service"], int(found["ms"])
            if ms > MAX_SERVICE_LATENCY_MS:
                raise ValueError(f"{entry!r}: at most {MAX_SERVICE_LATENCY_MS} ms")
            if (service in by_service) if service else default is not None:
                raise ValueError(f"{entry!r}: {service or 'the default'} is given twice")
            if service:
                by_service[service] = ms
            else:
                default = ms
        return cls(default_ms=default or 0, by_service=by_service)

    def seconds(self, service: str) -> float:
        """How long ``service`` waits before it answers."""
        return self.by_service.get(service, self.default_ms) / 1000

    def check_services(self, services: Iterable[str]) -> None:
        """ConfigError naming a service given a latency that is not one of ``services`` (the
        built-in ones and those the workflows directory declares, known once it is read)."""
        known = list(services)
        unknown = sorted(set(self.by_service) - set(known))
        if unknown:
            raise ConfigError(f"INFRABOT_SERVICE_LATENCY_MS: {unknown[0]} is not a service "
                              f"(the services: {', '.join(known)})")

    def __str__(self) -> str:
        return ",".join([*([str(self.default_ms)] if self.default_ms or not self.by_service
                           else []), *(f"{k}={v}" for k, v in sorted(self.by_service.items()))])


def _written(value: Any) -> Any:
    """An int is every service's latency; a string is the written form; else as given."""
    if isinstance(value, int) and not isinstance(value, bool):  # True is no latency
        return ServiceLatency(default_ms=value)
    if isinstance(value, str):
        return ServiceLatency.parse(value)
    return value


# The Settings field's type: read from the environment as written (never as JSON).
ServiceLatencySetting = Annotated[ServiceLatency, NoDecode, BeforeValidator(_written)]
