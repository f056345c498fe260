"""Mock PagerDuty (REST API v2): incidents and their notes.

``POST /incidents`` creates, ``PUT /incidents/{id}`` acknowledges or resolves (by
``incident.status``; two catalogue actions share that route), ``POST /incidents/{id}/notes``
adds a note, ``GET /incidents`` and ``GET /incidents/{id}`` read. Seeded with a triggered
incident for service-x's deploy in each environment: ``P7X9K2Q`` in prod, ``PSTG4X1`` in staging. Asking for the status an incident already has
changes nothing (200); a resolved incident cannot be acknowledged again (409).

Each PagerDuty service is one service's on-call in one environment (:data:`SERVICES`); an
incident is owned by its service's owner, and a listing shows only what the caller's context
owns.

:class:`PagerDutyState` keeps the seeded incidents for good and the most recent
:data:`~mock_services._recent.LIMIT` created ones, each with its most recent
:data:`NOTES_PER_INCIDENT` notes (an incident's notes go with it), and the last ``LIMIT`` history
entries.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import Query
from pydantic import BaseModel, ConfigDict, Field

from mock_services._access import Caller
from mock_services._bearer import ApiError
from mock_services._recent import RecentDict, RecentList
from mock_services._routing import CallerDep, ServiceRouter
from mock_services._targets import names
from orchestrator.identity import ResourceAttributes

API = "https://api.pagerduty.com"
# PagerDuty service id -> (the service it pages for, its environment)
SERVICES = {"PSVCX01": ("service-x", "prod"), "PSVCY02": ("service-y", "prod"),
            "PSVCXS1": ("service-x", "staging")}
Status = Literal["triggered", "acknowledged", "resolved"]
NOTES_PER_INCIDENT = 100  # below LIMIT: at most LIMIT incidents times this many notes


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Reference(BaseModel):
    id: str
    type: str
    summary: str | None = None


class ServiceRef(_In):
    id: str = Field(pattern=r"^P[A-Z0-9]{6}$")
    type: Literal["service_reference"] = "service_reference"


class IncidentBody(_In):
    type: Literal["incident_body"] = "incident_body"
    details: str = Field(max_length=10000)


class NewIncident(_In):
    type: Literal["incident"]
    title: str = Field(min_length=1, max_length=1024)
    service: ServiceRef
    urgency: Literal["high", "low"] = "high"
    body: IncidentBody | None = None
    incident_key: str | None = Field(None, max_length=255)


class CreateIncidentIn(_In):
    incident: NewIncident


class IncidentUpdate(_In):
    type: Literal["incident_reference", "incident"]
    status: Literal["acknowledged", "resolved"]
    resolution: str | None = Field(None, max_length=1000)


class UpdateIncidentIn(_In):
    incident: IncidentUpdate


class NoteContent(_In):
    content: str = Field(min_length=1, max_length=25000)


class NoteIn(_In):
    note: NoteContent


class Note(BaseModel):
    id: str
    user: Reference
    content: str
    created_at: str


class Incident(BaseModel):
    id: str
    type: str = "incident"
    incident_number: int
    title: str
    status: Status
    urgency: str
    incident_key: str | None = None
    service: Reference
    created_at: str
    last_status_change_at: str
    last_status_change_by: Reference | None = None
    resolve_reason: str | None = None
    html_url: str
    self: str


class IncidentOut(BaseModel):
    incident: Incident


class IncidentList(BaseModel):
    incidents: list[Incident]
    limit: int
    offset: int = 0
    more: bool = False
    total: int | None = None


class NoteOut(BaseModel):
    note: Note


@dataclass
class PagerDutyState:
    clock: Callable[[], float]
    incidents: RecentDict[str, Incident] = field(default_factory=RecentDict)
    notes: dict[str, RecentList[Note]] = field(default_factory=dict)  # keyed like incidents
    # (id, what, actor, sub)
    history: RecentList[tuple[str, str, str, str]] = field(default_factory=RecentList)

    def now(self) -> str:
        return datetime.fromtimestamp(self.clock(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def new_id(self) -> str:
        return f"Q{self.incidents.added + 1:06d}"

    def add(self, iid: str, title: str, service_id: str, urgency: str,
            key: str | None = None, *, seeded: bool = False) -> Incident:
        """A new triggered incident; a ``seeded`` one is never dropped for newer ones."""
        incident = Incident(
            id=iid, incident_number=self.incidents.added + 1, title=title, status="triggered",
            urgency=urgency, incident_key=key, created_at=self.now(),
            last_status_change_at=self.now(),
            service=Reference(id=service_id, type="service_reference",
                              summary=SERVICES[service_id][0]),
            html_url=f"https://acme.pagerduty.com/incidents/{iid}", self=f"{API}/incidents/{iid}")
        self.notes[iid] = RecentList(limit=NOTES_PER_INCIDENT)
        if seeded:
            self.incidents.pin(iid, incident)
            return incident
        dropped = self.incidents.put(iid, incident)
        if dropped is not None:
            del self.notes[dropped[0]]
        return incident


def owner_of(resource: str, service_id: str) -> ResourceAttributes:
    service, environment = SERVICES[service_id]
    return ResourceAttributes(resource=resource, service=service, environment=environment)


def _visible(caller: Caller, incident: Incident) -> bool:
    return caller.sees(owner_of(f"pagerduty:incident:{incident.id}", incident.service.id))


def _agent(actor: str) -> Reference:
    return Reference(id=actor, type="user_reference", summary=actor)


def build(router: ServiceRouter, clock: Callable[[], float]) -> PagerDutyState:
    state = PagerDutyState(clock)
    state.add("P7X9K2Q", "service-x deploy 9f2c1e7: p99 latency above 500ms", "PSVCX01", "high",
              key="deploy/service-x/9f2c1e7", seeded=True)
    state.add("PSTG4X1", "service-x staging deploy 9f2c1e7: p99 latency above 500ms", "PSVCXS1",
              "low", key="deploy/service-x/staging/9f2c1e7", seeded=True)

    @router.resolves("pagerduty.incident")
    def incidents(named: tuple[object, ...]) -> list[ResourceAttributes]:
        found = [state.incidents.get(i) for i in names(named[0])]
        return [owner_of(f"pagerduty:incident:{i.id}", i.service.id) for i in found if i]

    @router.resolves("pagerduty.service")
    def services(named: tuple[object, ...]) -> list[ResourceAttributes]:
        return [owner_of(f"pagerduty:service:{i}", i) for i in names(named[0]) if i in SERVICES]

    def incident(iid: str) -> Incident:
        if iid not in state.incidents:
            raise ApiError(404, "not_found", "Incident Not Found")
        return state.incidents[iid]

    @router.route("pagerduty.incident.list")
    async def list_incidents(
        caller: CallerDep,
        statuses: Annotated[list[Status] | None, Query(alias="statuses[]")] = None,
        service_ids: Annotated[list[str] | None, Query(alias="service_ids[]")] = None,
        limit: Annotated[int, Query(ge=1, le=100)] = 25,
    ) -> IncidentList:
        found = [i for i in state.incidents.values()
                 if (not statuses or i.status in statuses)
                 and (not service_ids or i.service.id in service_ids) and _visible(caller, i)]
        return IncidentList(incidents=found[:limit], limit=limit, more=len(found) > limit)

    @router.route("pagerduty.incident.read")
    async def get_incident(id: str, caller: CallerDep) -> IncidentOut:
        return IncidentOut(incident=incident(id))

    @router.route("pagerduty.incident.create", status_code=201)
    async def create_incident(body: CreateIncidentIn, caller: CallerDep) -> IncidentOut:
        new = body.incident
        if new.service.id not in SERVICES:
            raise ApiError(404, "not_found", "Service Not Found")
        created = state.add(state.new_id(), new.title, new.service.id, new.urgency,
                            new.incident_key)
        if new.body is not None:
            state.notes[created.id].add(Note(id=f"N{created.id}", user=_agent(caller.actor),
                                             content=new.body.details, created_at=state.now()))
        state.history.add((created.id, "created", caller.actor, caller.principal))
        return IncidentOut(incident=created)

    @router.route("pagerduty.incident.acknowledge", "pagerduty.incident.resolve",
                  operation_id="pagerduty.incident.update")
    async def update_incident(id: str, body: UpdateIncidentIn, caller: CallerDep) -> IncidentOut:
        current = incident(id)
        wanted = body.incident.status
        if current.status == wanted:  # an idempotent transition: repeated deploys resolve again
            return IncidentOut(incident=current)
        if current.status == "resolved":
            raise ApiError(409, "incident_already_resolved", "Incident Already Resolved")
        updated = current.model_copy(update={
            "status": wanted, "last_status_change_at": state.now(),
            "last_status_change_by": _agent(caller.actor),
            "resolve_reason": body.incident.resolution if wanted == "resolved" else None,
        })
        state.incidents[id] = updated
        state.history.add((id, wanted, caller.actor, caller.principal))
        return IncidentOut(incident=updated)

    @router.route("pagerduty.note.create", status_code=201)
    async def create_note(id: str, body: NoteIn, caller: CallerDep) -> NoteOut:
        incident(id)
        notes = state.notes[id]
        note = Note(id=f"N{id}{notes.added + 1}", user=_agent(caller.actor),
                    content=body.note.content, created_at=state.now())
        notes.add(note)
        state.history.add((id, "note", caller.actor, caller.principal))
        return NoteOut(note=note)

    return state
