"""``infrabot demo --report FILE.html``: the demo's story as one self-contained HTML file.

The same story as the terminal version (:mod:`infrabot.demo._render`): the CI event and the
run, the delegation graph (inline SVG laid out in Python), a timeline of the hops, the decoded
claims of every token the run was issued (signatures removed), the audit trail as the reference
article tabulates it, the attack round and the static-token baseline. Nothing is loaded from
anywhere: styles and scripts are inline, there are no fonts or images.

This module gathers what the page shows; the Jinja2 templates in ``templates/`` write it, with
autoescaping on and every value display-safe first (:mod:`infrabot.demo._templates`).

The graph and the lead name the run's own agents: those its events show, laid out by the
workflow's graph when the workflow is known (given, or the one the demo's system ran).

The file never holds a token: :func:`write_report` refuses to write a document in which any
string looks like a compact JWT (:class:`RawTokenInReport`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from infrabot.demo._report_edges import peer_of, route, scope_list, short
from infrabot.demo._report_svg import delegation_graph
from infrabot.demo._story import DemoResult
from infrabot.demo._templates import render
from orchestrator._display import safe_json
from orchestrator._words import plural
from orchestrator.audit import StoredRecord, contains_raw_jwt
from orchestrator.errors import InfraBotError
from orchestrator.runs import (
    DENIALS,
    Exchanged,
    RootDenied,
    RootGranted,
    Run,
    RunEvent,
    Timed,
    summarize,
    waterfall_rows,
)
from orchestrator.workflows import Workflow

AUDIT_COLUMNS = ("Timestamp", "Action", "Performed by", "On behalf of", "Resource", "Service",
                 "Decision", "Reason")
CLAIM_ORDER = ("iss", "sub", "aud", "client_id", "scope", "act", "may_act", "cnf", "ctx", "iat", "exp",
               "jti", "ancestors", "user_version", "registry_epoch", "revocation_url", "log_url")
DECODED = "decoded, signature removed"


class RawTokenInReport(InfraBotError, ValueError):
    """The report would contain something shaped like a raw JWT; it is not written."""

    reason = "raw_token_in_report"


@dataclass(frozen=True)
class Row:
    """One table row: its cells with their classes, extra ``<tr>`` attributes, and for the
    timeline the duration bar the template adds."""

    cells: list[tuple[object, str]]
    denied: bool = False
    attrs: tuple[tuple[str, object], ...] = ()
    bar: str = ""
    style: str = ""


@dataclass(frozen=True)
class Card:
    title: str
    meta: str
    claims: str  # JSON, display-safe


def write_report(result: DemoResult, path: Path, workflow: Workflow | None = None) -> None:
    """Render the report and write it to ``path``; refuses (and writes nothing) if any string
    in it looks like a compact JWT."""
    document = render_report(result, workflow)
    if contains_raw_jwt(document):
        raise RawTokenInReport("the report would contain a raw token; it was not written")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(document, encoding="utf-8")


def render_report(result: DemoResult, workflow: Workflow | None = None) -> str:
    run = result.run
    workflow = workflow if workflow is not None else result.workflow
    acted = {ev.agent for ev in run.events if ev.agent is not None}
    if workflow is not None and not acted <= {p.agent for p in workflow.agents}:
        workflow = None  # not the workflow this run ran (the folder changed since)
    first = workflow.root_agent if workflow is not None else None
    root = next((ev.detail for ev in run.events
                 if isinstance(ev.detail, RootGranted | RootDenied)), None)
    return render(
        "report.html", run=run, header=_header(result), route=route(run),
        drawing=delegation_graph(run, workflow), timeline=_timeline(run, first),
        decoded=DECODED, cards=_cards(result, root),
        root_scopes=_root_scopes(result, root) if root is not None else None,
        audit_columns=AUDIT_COLUMNS, audit=_audit_rows(result.audit),
        audit_lead=f"{plural(len(result.audit), 'record')} from the authorization server, the "
                   "webhook receiver and the four services, allowed and denied.",
        attacks=_attack_rows(result), refused=sum(a.refused for a in result.attacks),
        baseline=_baseline(result), trace=_waterfall(result), trace_id=run.trace_id,
        written=_iso(datetime.now(UTC)))


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _cells(*values: object, classes: tuple[str, ...] = ()) -> list[tuple[object, str]]:
    return list(zip(values, classes or ("",) * len(values), strict=True))


def _ms(ms: int | None) -> str:
    if ms is None:
        return "-"
    return f"{ms} ms" if ms < 10_000 else f"{ms / 1000:.1f} s"


def _header(result: DemoResult) -> dict[str, Any]:
    e, run = result.event, result.run
    service, env = e.get("service", run.service), e.get("environment", run.environment)
    commit, pr = e.get("commit", run.commit), e.get("pr", run.pr)
    facts = [("User", run.user), ("Run", run.run_id), ("Service", service),
             ("Status", run.status), ("Environment", env),
             ("Workflow", f"{run.workflow} ({run.mode}, trigger {run.trigger})"),
             ("Commit", commit), ("Run duration", _ms(run.duration_ms)),
             ("PR", f"#{pr}" if pr is not None else "-"),
             ("Demo duration", f"{result.seconds:.1f} s"),
             ("Repository", run.repository), ("Started", _iso(run.created_at))]
    kinds = [ev.kind for ev in run.events]
    denials = sum(isinstance(ev.detail, DENIALS) for ev in run.events)
    refused = sum(a.refused for a in result.attacks)
    counters = [("token exchanges", kinds.count("exchanged")),
                ("service calls allowed", kinds.count("called")),
                ("denials in the run", denials),
                ("audit records", len(result.audit)),
                ("attacks refused", f"{refused}/{len(result.attacks)}"),
                ("audit hash chain", "intact" if result.audit_intact else "BROKEN")]
    return {"user": e.get("user_login", run.user), "service": service, "commit": commit,
            "environment": env, "facts": facts, "counters": counters}


def _offset(run: Run, event: RunEvent) -> int:
    return int((event.time - run.created_at).total_seconds() * 1000)


def _timeline(run: Run, first: str | None) -> list[Row]:
    total = max([run.duration_ms or 0, 1] + [_offset(run, ev) for ev in run.events])
    rows = []
    for event in run.events:
        offset = _offset(run, event)
        ms = event.detail.ms if isinstance(event.detail, Timed) else 0
        start = max(offset - ms, 0)
        denied = isinstance(event.detail, DENIALS)
        bar = ("denied" if denied else "called" if event.kind == "called"
               else "exchanged" if ms else "point")
        agent = event.agent or (run.user if event.kind.startswith("root") else "orchestrator")
        rows.append(Row(
            _cells(f"+{offset}", agent, event.kind, summarize(event).replace("urn:infra:", ""),
                   classes=("num", "nowrap", "nowrap", "wrap")),
            denied=denied,
            attrs=(("data-agent", agent), ("data-peer", peer_of(event, first) or "")), bar=bar,
            style=f"left:{start / total * 100:.2f}%;width:{ms / total * 100:.2f}%"))
    return rows


def _claims_json(claims: dict[str, Any]) -> str:
    claims = {**claims, **({"delegation_chain": [_record_shown(r) for r in chain]}
                           if isinstance(chain := claims.get("delegation_chain"), list) else {})}
    ordered = {k: claims[k] for k in CLAIM_ORDER if k in claims}
    ordered |= {k: v for k, v in claims.items() if k not in ordered}
    return safe_json(ordered, indent=2, default=str)


def _chain(claims: dict[str, Any]) -> list[str]:
    actors, act = [], claims.get("act")
    while isinstance(act, dict):
        actors.append(str(act.get("sub")))
        act = act.get("act")
    return [*actors, str(claims.get("sub"))]


def _card(title: str, claims: dict[str, Any],
          statuses: dict[tuple[str, str, int], str] | None = None) -> Card:
    lifetime = claims.get("exp", 0) - claims.get("iat", 0) \
        if isinstance(claims.get("exp"), int) and isinstance(claims.get("iat"), int) else None
    meta = (f"chain (current actor first): {' ← '.join(_chain(claims))} · aud "
            f"{claims.get('aud', '-')} · scope {' '.join(scope_list(claims.get('scope')))} · "
            f"lifetime {lifetime if lifetime is not None else '?'} s (exp − iat) · jti "
            f"{claims.get('jti', '-')}")
    chain = claims.get("delegation_chain")
    if isinstance(chain, list) and chain:
        meta += " · delegation_chain (delegator-confirmed): " + ", ".join(
            f"{r.get('delegator_id')} → {r.get('delegatee_id')} "
            f"{(statuses or {}).get(_record_key(r), 'not checked')}"
            for r in chain if isinstance(r, dict))
    return Card(title, meta, _claims_json(claims))


def _record_shown(record: object) -> object:
    """A chain record for the page: its signatures (detached JWS, not secrets, but shaped like
    the start of a token) shortened to their last characters."""
    if not isinstance(record, dict):
        return record
    return {k: f"…{v[-12:]} (detached JWS)" if k.endswith("signature") and isinstance(v, str)
            else v for k, v in record.items()}


def _record_key(record: dict[str, Any]) -> tuple[str, str, int]:
    return (str(record.get("delegator_id")), str(record.get("delegatee_id")),
            int(record.get("delegation_timestamp") or 0))


def _cards(result: DemoResult, root: RootGranted | RootDenied | None) -> list[Card]:
    cards = []
    statuses = {(r["delegator"], r["delegatee"], r["at"]): r["status"]
                for chain in result.delegation_chains for r in chain["records"]}
    if isinstance(root, RootGranted) and root.claims is not None:
        cards.append(_card(f"root grant → {root.may_act}", root.claims))
    for ev in result.run.events:
        if isinstance(ev.detail, Exchanged) and ev.detail.claims is not None:
            cards.append(_card(f"{ev.agent} · {ev.detail.for_}", ev.detail.claims, statuses))
    return cards


def _root_scopes(result: DemoResult, root: RootGranted | RootDenied) -> list[Row]:
    needed = root.needed
    granted = set(root.granted) if isinstance(root, RootGranted) else set()
    held = set(result.user_permissions) | set(
        root.user_permissions if isinstance(root, RootGranted) else ())
    return [Row(_cells(short(s), "yes" if s in held else "no", "yes" if s in needed else "·",
                       "delegated" if s in granted else "dropped" if s in needed else "·"))
            for s in sorted(held | set(needed))]


def _waterfall(result: DemoResult) -> list[Row]:
    """The run's trace, span by span under its parent, on one time axis."""
    rows = waterfall_rows(result.trace)
    total = max((r.start_ms + r.duration_ms for r in rows), default=1.0) or 1.0
    return [Row(_cells("· " * r.depth + r.name, f"+{r.start_ms:.1f}",
                       f"{r.duration_ms:.1f}", r.outcome or "·",
                       classes=("nowrap", "num", "num", "nowrap")),
                denied=r.error or r.outcome.startswith("deny"),
                bar="denied" if r.error or r.outcome.startswith("deny") else "called",
                style=f"left:{r.start_ms / total * 100:.2f}%;"
                      f"width:{r.duration_ms / total * 100:.2f}%")
            for r in rows]


def _audit_rows(records: list[StoredRecord]) -> list[Row]:
    return [Row(_cells(_iso(r.time), r.action, r.performed_by or "-", r.principal or "-",
                       r.resource, r.service, r.decision, r.reason,
                       classes=("nowrap", "nowrap", "nowrap", "nowrap", "wrap", "", r.decision,
                                "")),
                denied=r.decision == "deny",
                attrs=(("title", f"chain: {' ← '.join(r.chain) or '-'}"),))
            for r in records]


def _attack_rows(result: DemoResult) -> list[Row]:
    return [Row(_cells(a.name, a.attempt, a.expected, f"{a.status} {a.code} ({a.reason})",
                       "refused" if a.refused else "NOT REFUSED",
                       classes=("nowrap", "", "nowrap", "nowrap",
                                "allow" if a.refused else "deny")))
            for a in result.attacks]


def _baseline(result: DemoResult) -> dict[str, Any] | None:
    run = result.static_run
    if run is None:
        return None
    return {"lead": f"Static run {run.run_id}: {run.status} ({run.reason or '-'}), "
                    f"{len(result.static_audit)} audit records.",
            "audit": _audit_rows(result.static_audit)}
