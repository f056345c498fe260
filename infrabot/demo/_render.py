"""The demo told in the terminal with Rich: event, root grant, hops, audit, attacks, baseline.

Every value that came from the run (names, scopes, reasons) is display-safe
(:func:`~orchestrator._display.display_safe`) and never read as console markup: a cell is
:func:`_t` (plain text), a value inside our own markup is :func:`_m` (escaped)."""

from __future__ import annotations

from typing import Any

from rich.console import Console, ConsoleOptions, Group, RenderResult
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from infrabot.demo._story import DemoResult
from orchestrator._display import display_safe
from orchestrator.audit._table import AuditView
from orchestrator.runs import (
    BranchEnded,
    BranchTaken,
    CallDenied,
    Called,
    Exchanged,
    ExchangeDenied,
    RootGranted,
    Run,
    StepSkipped,
)

_OK, _NO = "[green]✓[/green]", "[red]✗[/red]"


def _t(value: object) -> Text:
    """A table cell or label from run data: plain text, display-safe."""
    return Text(display_safe(value))


def _m(value: object) -> str:
    """Run data inside our markup: display-safe, and its brackets escaped."""
    return escape(display_safe(value))


def _short(scope: str | None) -> str:
    return (scope or "").replace("urn:infra:", "")


def _scopes(value: Any) -> str:
    items = value.split() if isinstance(value, str) else list(value or [])
    return " ".join(_short(s) for s in items) or "—"


def event_panel(result: DemoResult) -> Panel:
    e, run = result.event, result.run
    text = (f"[bold]{_m(e['user_login'])}[/bold] deployed [bold]{_m(e['service'])}[/bold] "
            f"@{_m(e['commit'])} to [bold]{_m(e['environment'])}[/bold] (PR #{_m(e['pr'])})\n"
            f"GitHub deployment webhook, HMAC-SHA256 signed, delivered to the receiver\n"
            f"run [cyan]{_m(run.run_id)}[/cyan] · workflow {_m(run.workflow)} · trigger "
            f"{_m(run.trigger)}")
    return Panel(text, title="1 · CI event", border_style="cyan")


def root_grant(result: DemoResult) -> Panel:
    d = next((e.detail for e in result.run.events if isinstance(e.detail, RootGranted)), None)
    if d is None:
        return Panel("root grant refused", title="2 · Root grant", border_style="red")
    needed, granted = d.needed, set(d.granted)
    held = set(result.user_permissions)
    table = Table(box=None, pad_edge=False)
    for column in ("scope", "sam holds", "workflow needs", "delegated"):
        table.add_column(column)
    for scope in sorted(held | set(needed)):
        table.add_row(_t(_short(scope)), _OK if scope in held else _NO,
                      _OK if scope in needed else "·",
                      _OK if scope in granted else ("[red]dropped[/red]" if scope in needed
                                                    else "·"))
    note = Text.from_markup(
        f"filterScopes(userPermissions, requiredScopes) ∩ context policy → "
        f"[bold]{len(granted)}[/bold] scopes, may_act {_m(d.may_act)}, "
        f"expires in {_m(d.expires_in)}s. Sam's secrets:manage never leaves the server.")
    return Panel(Group(table, note), title="2 · Root grant", border_style="cyan")


def _chain_tree(claims: dict[str, Any]) -> Tree:
    tree = Tree(f"[bold]{_m(claims.get('sub'))}[/bold] (sub: on whose behalf)")
    chain: list[str] = []
    act = claims.get("act")
    while isinstance(act, dict):
        chain.append(str(act.get("sub")))
        act = act.get("act")
    node = tree
    for depth, actor in enumerate(reversed(chain), 1):
        label = "current actor" if depth == len(chain) else "prior actor"
        node = node.add(_t(f"act: {actor} ({label})"))
    return tree


_HOP_COLUMNS = (("step", 3), ("requested → granted", 4), ("token", 2), ("call → status", 3),
                ("decision", 2))
HOPS_STACK_BELOW = 110  # narrower than this, each hop row is a block of its own


class _HopRows:
    """The hop rows as a table where it fits, else one block per row (agent and step, then
    the scopes, the token and the call), decided where it is drawn."""

    def __init__(self, rows: list[tuple[list[Any], bool]]) -> None:
        self.rows = rows  # (agent, step, scopes, token, call, decision), ends a section

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        if options.max_width < HOPS_STACK_BELOW:
            for cells, _ in self.rows:
                agent, step, scopes, token, call, decision = (_cell(c) for c in cells)
                yield Text.assemble(agent, "  ", step, "  ", decision)
                for part in (scopes, token, call):
                    if part.plain:
                        yield Text.assemble("    ", part)
            return
        table = Table(box=None, pad_edge=False, expand=True)
        widest = max((len(_cell(cells[0]).plain) for cells, _ in self.rows), default=5)
        table.add_column("agent", no_wrap=True, min_width=widest)  # identities kept whole
        for column, ratio in _HOP_COLUMNS:
            table.add_column(column, ratio=ratio, overflow="fold")
        for cells, section in self.rows:
            table.add_row(*cells, end_section=section)
        yield table


def _cell(value: Any) -> Text:
    return value if isinstance(value, Text) else Text.from_markup(str(value))


def _bound(claims: dict[str, Any]) -> str:
    """`` · DPoP`` for a token bound to a key (``cnf.jkt``), else nothing."""
    return " · DPoP" if isinstance(claims.get("cnf"), dict) else ""


def _graph_row(agent: str, d: BranchTaken | StepSkipped | BranchEnded) -> list[Any]:
    """A row of the workflow's graph: the way taken, a skipped step, a branch that stopped."""
    if isinstance(d, BranchTaken):
        way = " ∥ ".join(d.to) + (f" ⇒ join {d.join}" if d.join else "")
        what = "fan-out" if len(d.to) > 1 else "branch taken"
        return [_t(agent), _t(what), _t(way), _t(f"when {d.when}" if d.when else ""), "",
                _OK + " " + what]
    if isinstance(d, StepSkipped):
        return [_t(agent), _t(d.action), "", _t(f"not ({d.when})"), "", "· skipped"]
    return [_t(agent), _t("branch ended"), "", _t(d.reason), "",
            f"{_NO} {_m(d.status)} (the join ends the run)"]


def hops(run: Run, services: dict[str, str]) -> Panel:
    """One row per step (its exchange and its call), one per hand-off with the chain it built."""
    rows: list[tuple[list[Any], bool]] = []
    trees: list[Any] = []
    pending: list[Any] | None = None
    joins: dict[str, list[str]] = {}  # join agent -> the branches it waits for
    chains = run.branches
    inside = {agent: head for head, chain in chains.items() for agent in chain[1:]}
    for event in run.events:
        d = event.detail
        if event.agent is None:
            continue
        if isinstance(d, BranchTaken | StepSkipped | BranchEnded):
            rows.append((_graph_row(event.agent, d), isinstance(d, BranchTaken)))
            if isinstance(d, BranchTaken) and d.join:
                joins[d.join] = [" → ".join(chains.get(b, (b,))) for b in d.to]
        elif isinstance(d, Exchanged) and d.hand_off is not None:
            claims = d.claims or {}
            join = f" · join of {', '.join(joins[d.hand_off])}" if d.hand_off in joins else ""
            join += f" · in {inside[d.hand_off]}'s branch" if d.hand_off in inside else ""
            rows.append(([_t(event.agent), _t(d.for_), _t(_scopes(d.granted)),
                          _t(f"may_act {(claims.get('may_act') or {}).get('sub', '?')}"
                             + _bound(claims) + join), "",
                          _OK + " handed off"], True))
        elif isinstance(d, Exchanged):
            claims = d.claims or {}
            lifetime = claims.get("exp", 0) - claims.get("iat", 0) if claims else 0
            aud = services.get(str(claims.get("aud")), str(claims.get("aud")))
            trees = [_chain_tree(claims)] if claims else trees  # the deepest chain so far
            scopes = f"{_scopes(d.requested)} → {_scopes(d.granted)}"
            pending = [_t(event.agent), _t(d.for_), _t(scopes),
                       _t(f"aud {aud} · {lifetime}s{_bound(claims)}")]
        elif isinstance(d, Called | CallDenied):
            row = pending or [_t(event.agent), "", "", ""]
            decision = _OK + " allow" if isinstance(d, Called) else _NO + f" {_m(d.reason)}"
            rows.append(([*row, _t(f"{d.method} {d.action} → {d.status}"), decision], False))
            pending = None
        elif isinstance(d, ExchangeDenied):
            rows.append(([_t(event.agent), _t(d.for_), _t(f"{_scopes(d.requested)} → refused"),
                          "", "", f"{_NO} {_m(d.error)} ({_m(d.reason)})"], False))
    if trees:
        trees.insert(0, Text("Delegation path of the last token (in the JSON it nests the other "
                             "way: the outermost act.sub is the current actor):", style="dim"))
    note = Text("One RFC 8693 exchange per call and per hand-off, the act chain nesting one "
                "level each.", style="dim")
    return Panel(Group(note, _HopRows(rows), *trees), title="3 · Hops", border_style="cyan")


def attacks(result: DemoResult) -> Panel:
    table = Table(box=None)
    for column in ("attack", "attempt", "refused with", ""):
        table.add_column(column, overflow="fold")
    for a in result.attacks:
        table.add_row(_t(a.name), _t(a.attempt), _t(f"{a.status} {a.code} ({a.reason})"),
                      _OK if a.refused else _NO + " NOT REFUSED")
    return Panel(table, title="5 · Attack round against the same running system",
                 border_style="magenta")


def baseline(result: DemoResult) -> Panel:
    body: list[Any] = [AuditView(result.static_audit, title=None)]
    body.append(Text.from_markup(
        "One long-lived, over-permissioned service token: every call is [bold]performed by a "
        "service account on behalf of nobody[/bold]. No user, no chain, no narrowing, no "
        "per-run revocation: the trail cannot say who asked for what."))
    return Panel(Group(*body), title="6 · The same workflow without delegation (static token)",
                 border_style="yellow")


def render_demo(result: DemoResult, console: Console) -> None:
    console.print(event_panel(result))
    console.print(root_grant(result))
    console.print(hops(result.run, {url: name for name, url in result.endpoints.items()}))
    console.print(Panel(AuditView(result.audit, title=None),
                        title="4 · Audit trail of the run", border_style="cyan"))
    if result.attacks:
        console.print(attacks(result))
    if result.static_run is not None:
        console.print(baseline(result))
    refused = sum(a.refused for a in result.attacks)
    console.print(
        f"run [bold]{result.run.status}[/bold] in {result.run.duration_ms} ms · "
        f"{len(result.audit)} audit records · attacks refused {refused}/{len(result.attacks)} · "
        f"audit chain {'intact' if result.audit_intact else 'BROKEN'} · "
        f"demo took {result.seconds:.1f}s")
