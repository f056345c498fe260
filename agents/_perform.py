"""An agent's hop, start to end: its steps (those whose ``when:`` holds), then the way on its
plan takes: a hand-off to one agent, a fan-out to several with the join's hand-off, or none.

Hand-offs (docs/graphs.md): a plain hand-off carries what the next agent and those after it need.
A fan-out mints, from the forking agent's token, one hand-off per branch (``may_act`` that
branch's agent, bound to its key, scope what that branch needs) and the join's hand-off
(``may_act`` the join agent, scope what the join and after need), which names every branch token
in its ``ancestors``: revoking a branch revokes the join, and the join never holds more than the
fork point held. A branch is a sub-chain: an agent in it hands off on like any agent, its
hand-off exchanged from its own token. The join's hand-off travels with the branches' hops and
goes out once every branch has ended (agents/_fan_out.py); the join's hop checks that again
first; a branch that stopped (denied, expired, failed), at any agent of it, ends the run there,
as the branch's own outcome.
"""

from __future__ import annotations

from typing import Any

from agents._fan_out import branch_stop, claim, joined_run
from agents._hop import Delivery, Hop, HopOutcome, Stop, step_results, stopped, template_values
from agents._runtime import AgentRuntime
from orchestrator.catalog import CATALOG
from orchestrator.runs import HAND_OFF, STOPS, BranchTaken, HandedOff, HopJournal, resume_point
from orchestrator.workflows import (
    HandOff,
    branch_of,
    downstream_scopes,
    fork_of,
    parse_condition,
    with_step_results,
)

TERMINAL_RUN = ("succeeded", "denied", "failed", "expired")
STALE = "stale hand-off"  # a duplicate: the sender published a newer copy of this hand-off


def perform_hop(rt: AgentRuntime, *, run_id: str, workflow: str, agent: str, token: str,
                scope: str, mode: str = "delegated", generation: int = 0) -> HopOutcome:
    """One agent's part of a run, resumed from its journal. Raises TransientError for faults
    worth a retry. ``generation``: the journaled hand-off this message carries (the first
    agent's is the orchestrator's; 0: none journaled, as for runs started before it was)."""
    run = rt.runs.get(run_id)
    if run is None:
        return HopOutcome("failed", "unknown_run")
    journal = HopJournal(rt.runs)
    if run.status in TERMINAL_RUN or rt.runs.hop_done(run_id, agent):
        # an older copy of a renewed hand-off is stale even once the hop is done: it carries
        # what the newer one replaced (in a branch, an older fan-out's join)
        stale = journal.renewed(run_id, agent, generation)
        return HopOutcome("duplicate", STALE if stale else "hop already done")
    if workflow not in rt.workflows:  # renamed or removed by a deploy while the run went on
        return HopOutcome("failed", f"{agent}: unknown_workflow {workflow!r} (not in this "
                                    "worker's workflows)")
    if mode == "delegated" and not rt.holds_key(agent):
        return HopOutcome("failed", f"{agent}: this worker holds no key for {agent} (a task "
                                    "misrouted to another agent's queue); it never signs with "
                                    "another agent's key")
    flow = rt.workflows[workflow]
    if generation and not claim(journal, run_id, flow, agent, generation):
        return HopOutcome("duplicate", STALE)
    fork = fork_of(flow, agent)
    if fork is not None:
        run = joined_run(rt, journal, run_id, flow, fork[1])
        ended = branch_stop(run, flow, fork[1])
        if ended is not None:
            return ended
    hop = Hop(rt, run, flow, agent, journal)
    try:
        _steps(hop, token, scope, mode)
        return _way_on(hop, token, scope, mode)
    except Stop as stop:
        return stop.outcome
    finally:  # whatever ended the hop: no token asked for ahead outlives it unused
        hop.release()


def _steps(hop: Hop, token: str, scope: str, mode: str) -> None:
    """Every step not done yet, in order; a step whose ``when:`` does not hold is skipped."""
    plan = hop.workflow.plan(hop.agent)
    records = hop.journal.steps(hop.run.run_id, hop.agent)
    targets = {t for edge in plan.edges for t in (*edge.to, *((edge.join,) if edge.join else ()))}
    resume = resume_point(records, len(plan.steps) + 1, actions=[s.action for s in plan.steps],
                          hand_offs={f"{HAND_OFF}{t}" for t in targets})
    if resume.changed is not None:  # never skipped or repeated by number: the run ends here
        planned = plan.steps[resume.step].action if resume.step < len(plan.steps) else None
        raise Stop(HopOutcome("failed", f"{hop.agent}: workflow_changed (step {resume.step} "
                              f"was {resume.changed.action}, the workflow now has {planned})"))
    if resume.stopped is not None:
        raise stopped(resume.stopped)
    for index, record in sorted(records.items()):  # a fan-out's refused hand-off, recorded
        if index > len(plan.steps) and record.state in STOPS:
            raise stopped(record)
    results = step_results(hop.run)
    values = template_values(hop.run, hop.workflow)
    for index in range(resume.step, len(plan.steps)):
        step = plan.steps[index]
        if step.when is not None and not parse_condition(step.when)(results):
            hop.skip(index, step.action, step.when)
            continue
        action = CATALOG[step.action]
        service_token, bound = token, False
        if mode == "delegated":
            issued = hop.exchange(token, step=index, what=step.action,
                                  prove=hop.rt.proves(action.service),
                                  resource=hop.rt.service_url(action.service),
                                  scope=action.scope)
            service_token, bound = issued["access_token"], issued["token_type"] == "DPoP"
        params = step.rendered_params(with_step_results(step.params, values, results))
        if mode == "delegated" and hop.rt.settings.overlap_hops:
            _ask_ahead(hop, token, scope, index, results)
        result = hop.call(index, step.action, params, service_token, bound, step.id)
        if step.id is not None:
            results[step.id] = result


def _ask_ahead(hop: Hop, token: str, scope: str, index: int,
               results: dict[str, Any]) -> None:
    """As step ``index``'s call goes out: ask for the token of the next exchange the hop will
    certainly make, unless it stops first (docs/journal.md, Overlapped hops). That is the next
    step whose ``when:`` holds, or after the last step the plain hand-off. Nothing is asked
    ahead past a condition that reads a result not known yet (the call in flight or one after
    it), nor for a fan-out's hand-offs."""
    plan = hop.workflow.plan(hop.agent)
    for later in range(index + 1, len(plan.steps)):
        step = plan.steps[later]
        holds = _known(step.when, results)
        if holds is None:
            return
        if holds:
            action = CATALOG[step.action]
            hop.ask_ahead(token, step=later, what=step.action,
                          prove=hop.rt.proves(action.service),
                          resource=hop.rt.service_url(action.service), scope=action.scope)
            return
    for edge in plan.edges:
        holds = _known(edge.when, results)
        if holds is None:  # unknown yet: nothing past it is certain
            return
        if not holds:  # not this way: the next edge
            continue
        if not edge.fan_out and edge.join is None:
            hop.ask_ahead(token, **_hand_off_request(hop, set(scope.split()), edge.to[0],
                                                     len(plan.steps)))
        return


def _known(when: str | None, results: dict[str, Any]) -> bool | None:
    """Whether a ``when:`` holds, from the results known now; None if it reads one not known
    yet (a step's whose call is in flight, or later)."""
    if when is None:
        return True
    condition = parse_condition(when)
    if not condition.step_ids <= results.keys():
        return None
    return condition(results)


def _chosen(hop: Hop) -> HandOff | None:
    """The first way on whose condition holds (one without a condition always does)."""
    edges = hop.workflow.plan(hop.agent).edges
    if not edges:
        return None
    results = step_results(hop.rt.runs.get(hop.run.run_id) or hop.run)
    return next((e for e in edges if e.when is None or parse_condition(e.when)(results)), None)


def _way_on(hop: Hop, token: str, scope: str, mode: str) -> HopOutcome:
    edge = _chosen(hop)
    if edge is None:
        done = "branch_done" if branch_of(hop.workflow, hop.agent) else "succeeded"
        return HopOutcome(done)  # type: ignore[arg-type]
    # A fan-out's branches are published one after another by one hop: their hand-offs take
    # their generations together (all or none), never one renewed without the others. The
    # join's is journaled when it goes out, once every branch has ended (join_due).
    generations = hop.journal.send_together(hop.run.run_id, edge.to)
    if generations is None:  # published by an earlier attempt: never twice
        return HopOutcome("forked" if edge.fan_out else "handed_off", next_agent=edge.to[0])
    if len(hop.workflow.plan(hop.agent).edges) > 1 or edge.fan_out:
        hop.event(BranchTaken(to=list(edge.to), when=edge.when, join=edge.join))
    deliveries = _mint(hop, token, scope, mode, edge, generations)
    if not edge.fan_out:
        only = deliveries[0]
        return HopOutcome("handed_off", next_agent=only.agent, next_token=only.token,
                          next_scope=only.scope, generation=only.generation)
    return HopOutcome("forked", next_agent=edge.to[0], branches=tuple(deliveries[:-1]),
                      join=deliveries[-1])


def _mint(hop: Hop, token: str, scope: str, mode: str, edge: HandOff,
          generations: list[int]) -> list[Delivery]:
    """The hand-off of each target (the branches, then the join), journaled as the steps
    after the agent's last."""
    if mode != "delegated":
        same = [Delivery(t, token, scope, g) for t, g in zip(edge.to, generations, strict=True)]
        return [*same, *((Delivery(edge.join, token, scope, 0),) if edge.join else ())]
    handed = set(scope.split())
    first = len(hop.workflow.plan(hop.agent).steps)
    out: list[Delivery] = []
    for index, target in enumerate(edge.to):
        out.append(_hand_off(hop, token, handed, target, first + index, generations[index]))
    if edge.join is not None:  # generation 0: taken when the join goes out (join_due)
        out.append(_hand_off(hop, token, handed, edge.join, first + len(edge.to), 0,
                             joined=tuple(d.token for d in out)))
    for delivery in out:  # once every hand-off is minted: a fan-out goes out whole or not
        hop.event(HandedOff(to=delivery.agent, scope=delivery.scope or None))
    return out


def _hand_off(hop: Hop, token: str, handed: set[str], target: str, step: int, generation: int,
              joined: tuple[str, ...] = ()) -> Delivery:
    result: dict[str, Any] = hop.exchange(
        token, joined=joined, **_hand_off_request(hop, handed, target, step))
    return Delivery(target, result["access_token"], result.get("scope") or "", generation)


def _hand_off_request(hop: Hop, handed: set[str], target: str, step: int) -> dict[str, Any]:
    """The exchange for the hand-off to ``target``: the scopes it and those after it need, of
    those handed to this hop."""
    needed = downstream_scopes(hop.workflow, hop.agent, target)
    wanted = [s for s in needed if s in handed] or needed
    return {"step": step, "what": f"{HAND_OFF}{target}", "prove": hop.rt.proves(None),
            "audience": target, "scope": " ".join(wanted)}
