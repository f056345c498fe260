"""``infrabot demo --report FILE.html``: the demo's story as one self-contained HTML file.

The same story as the terminal version (:mod:`orchestrator.demo._render`): the CI event and the
run, the delegation graph (inline SVG drawn in Python), a timeline of the hops, the decoded
claims of every token the run was issued (signatures removed), the audit trail as the reference
article tabulates it, the attack round and the static-token baseline. Nothing is loaded from
anywhere: styles and scripts are inline, there are no fonts or images. Every value is escaped,
and display-safe first: control characters and bidirectional overrides show as escapes.

The file never holds a token: :func:`write_report` refuses to write a document in which any
string looks like a compact JWT (:class:`RawTokenInReport`).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

from orchestrator._display import safe_html, safe_json
from orchestrator._words import plural
from orchestrator.audit import StoredRecord, contains_raw_jwt
from orchestrator.demo._report_style import CSS, ERROR_BEACON, INTERACTIONS
from orchestrator.demo._report_svg import delegation_graph, peer_of, scope_list, short
from orchestrator.demo._story import DemoResult
from orchestrator.errors import InfraBotError
from orchestrator.runs import Run, RunEvent, summarize

AUDIT_COLUMNS = ("Timestamp", "Action", "Performed by", "On behalf of", "Resource", "Service",
                 "Decision", "Reason")
DENIED_KINDS = frozenset({"root_denied", "exchange_denied", "call_denied"})
CLAIM_ORDER = ("iss", "sub", "aud", "client_id", "scope", "act", "may_act", "ctx", "iat", "exp",
               "jti", "ancestors", "user_version", "registry_epoch", "revocation_url", "log_url")
DECODED = "decoded, signature removed"
DENIED_ROW = ' class="denied"'


class RawTokenInReport(InfraBotError, ValueError):
    """The report would contain something shaped like a raw JWT; it is not written."""

    reason = "raw_token_in_report"


def write_report(result: DemoResult, path: Path) -> None:
    """Render the report and write it to ``path``; refuses (and writes nothing) if any string
    in it looks like a compact JWT."""
    document = render_report(result)
    if contains_raw_jwt(document):
        raise RawTokenInReport("the report would contain a raw token; it was not written")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(document, encoding="utf-8")


def render_report(result: DemoResult) -> str:
    run = result.run
    sections = [_header(result), _graph(run), _timeline(run), _tokens(result),
                _section("audit", "Audit trail of the run",
                         f"{plural(len(result.audit), 'record')} from the authorization "
                         "server, the webhook receiver and the four services, allowed and denied.",
                         _audit_table(result.audit, "audit-table"))]
    if result.attacks:
        sections.append(_attacks(result))
    if result.static_run is not None:
        sections.append(_baseline(result))
    title = f"InfraBot Chains · {run.run_id}"
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_e(title)}</title><script>{ERROR_BEACON}</script>"
            f"<style>{CSS}</style></head><body><main>{''.join(sections)}"
            f"<footer>Written by <code>infrabot demo --report</code> at "
            f"{_e(_iso(datetime.now(UTC)))}. No token is in this file: claims are {DECODED}, "
            f"and the file is refused if any string in it looks like a compact JWT.</footer>"
            f"</main><script>{INTERACTIONS}</script></body></html>\n")


def _e(value: object) -> str:
    """Escaped for HTML, after control characters and bidirectional overrides are neutralised
    (:func:`~orchestrator._display.safe_html`)."""
    return safe_html(value)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _section(ident: str, title: str, lead: str, body: str) -> str:
    return (f'<section id="{ident}-section"><h2>{_e(title)}</h2>'
            f'<p class="lead">{_e(lead)}</p>{body}</section>')


def _table(ident: str, columns: Iterable[str], rows: Iterable[str]) -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in columns)
    return (f'<table id="{ident}"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')


def _cells(*values: object, classes: tuple[str, ...] = ()) -> str:
    return "".join(f'<td class="{c}">{_e(v)}</td>' if c else f"<td>{_e(v)}</td>"
                   for v, c in zip(values, classes or ("",) * len(values), strict=True))


def _ms(ms: int | None) -> str:
    if ms is None:
        return "-"
    return f"{ms} ms" if ms < 10_000 else f"{ms / 1000:.1f} s"


def _header(result: DemoResult) -> str:
    e, run = result.event, result.run
    user, service = e.get("user_login", run.user), e.get("service", run.service)
    commit, env, pr = e.get("commit", run.commit), e.get("environment", run.environment), \
        e.get("pr", run.pr)
    status = (f'<span class="status {_e(run.status)}">{_e(run.status)}</span>'
              + ("" if run.status == "succeeded" else f" {_e(run.reason)}"))
    facts = [("User", _e(run.user)), ("Run", _e(run.run_id)), ("Service", _e(service)),
             ("Status", status), ("Environment", _e(env)),
             ("Workflow", _e(f"{run.workflow} ({run.mode}, trigger {run.trigger})")),
             ("Commit", _e(commit)), ("Run duration", _e(_ms(run.duration_ms))),
             ("PR", _e(f"#{pr}" if pr is not None else "-")),
             ("Demo duration", _e(f"{result.seconds:.1f} s")),
             ("Repository", _e(run.repository)), ("Started", _e(_iso(run.created_at)))]
    items = "".join(f"<dt>{name}</dt><dd>{html}</dd>" for name, html in facts)
    kinds = [ev.kind for ev in run.events]
    refused = sum(a.refused for a in result.attacks)
    counters = [("token exchanges", kinds.count("exchanged")),
                ("service calls allowed", kinds.count("called")),
                ("denials in the run", sum(k in DENIED_KINDS for k in kinds)),
                ("audit records", len(result.audit)),
                ("attacks refused", f"{refused}/{len(result.attacks)}"),
                ("audit hash chain", "intact" if result.audit_intact else "BROKEN")]
    return (f"<header><h1>{_e(user)} deployed {_e(service)} @{_e(commit)} to {_e(env)}</h1>"
            f'<p class="lead">A signed CI webhook started the run. InfraBot → ArgoCD → '
            f"CleanupAgent act on behalf of {_e(run.user)}: one RFC 8693 token exchange per "
            f'call and per hand-off, every call checked and audited.</p><dl class="facts">'
            f'{items}</dl><ul class="counters">'
            + "".join(f"<li><b>{_e(v)}</b> {_e(k)}</li>" for k, v in counters)
            + "</ul></header>")


def _graph(run: Run) -> str:
    legend = ('<div class="legend"><span class="l-handoff">hand-off (scopes handed off)</span>'
              '<span class="l-call">call (scope used)</span>'
              '<span class="l-denied">denied (reason)</span></div>')
    return _section("graph", "Delegation graph",
                    "Who handed what to whom, and which service each agent called with which "
                    "scope. Hover an edge or a node to find its events in the timeline.",
                    f"<figure>{delegation_graph(run)}{legend}</figure>")


def _offset(run: Run, event: RunEvent) -> int:
    return int((event.time - run.created_at).total_seconds() * 1000)


def _timeline(run: Run) -> str:
    total = max([run.duration_ms or 0, 1] + [_offset(run, ev) for ev in run.events])
    rows = []
    for event in run.events:
        offset, ms = _offset(run, event), event.detail.get("ms")
        ms = ms if isinstance(ms, int) and ms >= 0 else 0
        start = max(offset - ms, 0)
        bar = ("denied" if event.kind in DENIED_KINDS else "called" if event.kind == "called"
               else "exchanged" if ms else "point")
        style = f"left:{start / total * 100:.2f}%;width:{ms / total * 100:.2f}%"
        agent = event.agent or (run.user if event.kind.startswith("root") else "orchestrator")
        peer = peer_of(event)
        denied = DENIED_ROW if event.kind in DENIED_KINDS else ""
        rows.append(f'<tr{denied} data-agent="{_e(agent)}" data-peer="{_e(peer or "")}">'
                    + _cells(f"+{offset}", agent, event.kind,
                             summarize(event).replace("urn:infra:", ""),
                             classes=("num", "nowrap", "nowrap", "wrap"))
                    + f'<td><div class="track"><div class="bar {bar}" style="{style}">'
                      f"</div></div></td></tr>")
    return _section("timeline", "Timeline of hops",
                    f"Every event of {run.run_id} with its offset from the start of the run; "
                    "bars show how long each exchange and call took.",
                    _table("timeline", ("+ms", "Agent", "Event", "Detail", "When"), rows))


def _claims_json(claims: dict[str, Any]) -> str:
    ordered = {k: claims[k] for k in CLAIM_ORDER if k in claims}
    ordered |= {k: v for k, v in claims.items() if k not in ordered}
    return safe_json(ordered, indent=2, default=str)


def _chain(claims: dict[str, Any]) -> list[str]:
    actors, act = [], claims.get("act")
    while isinstance(act, dict):
        actors.append(str(act.get("sub")))
        act = act.get("act")
    return [*actors, str(claims.get("sub"))]


def _token_card(title: str, claims: dict[str, Any]) -> str:
    lifetime = claims.get("exp", 0) - claims.get("iat", 0) \
        if isinstance(claims.get("exp"), int) and isinstance(claims.get("iat"), int) else None
    meta = (f"chain (current actor first): {' ← '.join(_chain(claims))} · aud "
            f"{claims.get('aud', '-')} · scope {' '.join(scope_list(claims.get('scope')))} · "
            f"lifetime {lifetime if lifetime is not None else '?'} s (exp − iat) · jti "
            f"{claims.get('jti', '-')}")
    return (f'<div class="token"><h3>{_e(title)}<span class="badge">{DECODED}</span></h3>'
            f'<p class="meta">{_e(meta)}</p><pre>{escape(_claims_json(claims))}</pre></div>')


def _root_scopes(result: DemoResult, detail: dict[str, Any]) -> str:
    needed = [str(s) for s in detail.get("needed", [])]
    granted = {str(s) for s in detail.get("granted", [])}
    held = set(result.user_permissions) | {str(s) for s in detail.get("user_permissions", [])}
    rows = ["<tr>" + _cells(short(s), "yes" if s in held else "no",
                            "yes" if s in needed else "·",
                            "delegated" if s in granted else "dropped" if s in needed else "·")
            + "</tr>" for s in sorted(held | set(needed))]
    return _table("root-grant", (f"Scope ({result.run.user})", "User holds", "Workflow needs",
                                 "Root grant"), rows)


def _tokens(result: DemoResult) -> str:
    root = next((ev for ev in result.run.events if ev.kind in ("root_granted", "root_denied")),
                None)
    cards = []
    if root is not None and isinstance(root.detail.get("claims"), dict):
        cards.append(_token_card(f"root grant → {root.detail.get('may_act')}",
                                 root.detail["claims"]))
    for ev in result.run.events:
        if ev.kind == "exchanged" and isinstance(ev.detail.get("claims"), dict):
            cards.append(_token_card(f"{ev.agent} · {ev.detail.get('for')}", ev.detail["claims"]))
    scopes = _root_scopes(result, root.detail) if root is not None else ""
    return _section("tokens", f"Tokens ({DECODED})",
                    "The root grant is the workflow's needs ∩ what the user holds ∩ the context "
                    "policy (the article's filterScopes); scopes the workflow does not need never "
                    "leave the server. Below, the claims of every token the run was issued, "
                    f"{DECODED}: never a raw token.",
                    f'{scopes}<h3 style="margin-top:14px">Claims</h3>'
                    f'<div class="tokens">{"".join(cards)}</div>')


def _audit_table(records: list[StoredRecord], ident: str) -> str:
    rows = [f'<tr{DENIED_ROW if r.decision == "deny" else ""} '
            f'title="chain: {_e(" ← ".join(r.chain) or "-")}">'
            + _cells(_iso(r.time), r.action, r.performed_by or "-", r.on_behalf_of or "-",
                     r.resource, r.service, r.decision, r.reason,
                     classes=("nowrap", "nowrap", "nowrap", "nowrap", "wrap", "", r.decision, ""))
            + "</tr>" for r in records]
    return _table(ident, AUDIT_COLUMNS, rows)


def _attacks(result: DemoResult) -> str:
    rows = ["<tr>" + _cells(a.name, a.attempt, a.expected, f"{a.status} {a.code} ({a.reason})",
                            "refused" if a.refused else "NOT REFUSED",
                            classes=("nowrap", "", "nowrap", "nowrap",
                                     "allow" if a.refused else "deny"))
            + "</tr>" for a in result.attacks]
    refused = sum(a.refused for a in result.attacks)
    return _section("attacks", "Attack round",
                    f"What an attacker or a confused agent tries against the same running system, "
                    f"over real HTTP: {refused} of {len(result.attacks)} refused.",
                    _table("attacks", ("Attack", "Attempt", "Must be refused with",
                                       "Refused with", "Result"), rows))


def _baseline(result: DemoResult) -> str:
    run = result.static_run
    assert run is not None
    loses = ("One long-lived, over-permissioned service token and no exchange: every call is "
             "performed by a service account on behalf of nobody. No user, no chain, no "
             "narrowing, no per-run revocation: the trail cannot say who asked for what.")
    table = _audit_table(result.static_audit, "baseline-audit-table") if result.static_audit \
        else "<p>No audit records were written for the static run.</p>"
    return _section("baseline", "The same workflow without delegation (static token)",
                    f"Static run {run.run_id}: {run.status} ({run.reason or '-'}), "
                    f"{len(result.static_audit)} audit records.",
                    f'<p class="note">{_e(loses)}</p>{table}')
