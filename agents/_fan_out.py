"""A fan-out's two edges in the run log (docs/graphs.md): where its branches start, and when
its join is due.

The fork publishes its branches' hops one after another and then records them all ``sent`` at
once. A branch's first hop claims its hand-off only once the fan-out is recorded so
(:func:`claim`): a fork that stopped between two publishes is performed again and publishes the
whole fan-out again under new generations, which no claimed branch may prevent (the branch it
never published would never start). The join goes out once every branch has ended, an agent of it
done without handing off (:func:`join_due`), and the join's hop looks again before it acts
(:func:`joined_run`).
"""

from __future__ import annotations

import time

from agents._hop import HopOutcome
from agents._runtime import AgentRuntime
from orchestrator.errors import Unavailable
from orchestrator.runs import BranchEnded, HopJournal, Run
from orchestrator.workflows import HandOff, Workflow, branch_agents, branch_of

BRANCHES_UNFINISHED = "branches_unfinished"  # a join fired early: retried (agents/_retry.py)
FAN_OUT_IN_DOUBT = "fan_out_in_doubt"  # a branch's hand-off claimed too early: retried so too
# How long a branch's first hop waits inline for its fork to record the fan-out sent (usually
# the few milliseconds between the fork's last publish and that record), before it is retried
# instead; it looks again after 2 ms, then after twice as long each time, at most 50 ms apart.
CLAIM_WAIT_SECONDS, FIRST_PAUSE_SECONDS, LONGEST_PAUSE_SECONDS = 1.0, 0.002, 0.05


def claim(journal: HopJournal, run_id: str, flow: Workflow, agent: str, generation: int) -> bool:
    """Claim the hand-off ``agent``'s hop was given; False for a stale copy (its sender
    published a newer one). The first agent of a branch waits until its fork has recorded the
    whole fan-out published: inline for up to a second, then retried (:data:`FAN_OUT_IN_DOUBT`)
    until the run's deadline, since a fork that died between its publishes is performed again
    only once its message comes back (on Redis, after the visibility timeout)."""
    branch = branch_of(flow, agent)
    if branch is None or branch.head != agent:
        return journal.receive(run_id, agent, generation)
    give_up, pause = time.monotonic() + CLAIM_WAIT_SECONDS, FIRST_PAUSE_SECONDS
    while True:
        claimed = journal.receive_branch(run_id, agent, generation, branch.fan_out.to)
        if claimed != "waiting":
            return claimed == "claimed"
        if time.monotonic() >= give_up:
            raise Unavailable(f"{branch.fork}'s fan-out is not recorded published yet",
                              reason=FAN_OUT_IN_DOUBT)
        time.sleep(pause)
        pause = min(pause * 2, LONGEST_PAUSE_SECONDS)


def joined_run(rt: AgentRuntime, journal: HopJournal, run_id: str, flow: Workflow,
               fan_out: HandOff) -> Run:
    """The run, once every branch of the fan-out has ended; until then a retry. The join goes
    out only once the run log shows every branch ended (:func:`join_due`): this is the join's
    own second look, before it acts."""
    waiting = [a for a in (_running(rt, journal, run_id, flow, b) for b in fan_out.to) if a]
    if waiting:
        raise Unavailable(f"the join waits for {', '.join(waiting)}",
                          reason=BRANCHES_UNFINISHED)
    run = rt.runs.get(run_id)
    assert run is not None
    return run


def join_due(rt: AgentRuntime, run_id: str, flow: Workflow, agent: str) -> str | None:
    """The join of the fan-out ``agent`` is in a branch of, once every branch of it has ended
    (docs/graphs.md): the run log, not a counter elsewhere, says so. None while a branch still
    runs (its end publishes the join), and for an agent in no branch."""
    branch = branch_of(flow, agent)
    if branch is None:
        return None
    journal = HopJournal(rt.runs)
    if any(_running(rt, journal, run_id, flow, head) for head in branch.fan_out.to):
        return None
    return branch.fan_out.join


def _running(rt: AgentRuntime, journal: HopJournal, run_id: str, flow: Workflow,
             head: str) -> str | None:
    """The agent ``head``'s branch still waits for, or None once it has ended: an agent of it
    recorded its hop done and handed off to no one."""
    agent: str | None = head
    while agent is not None:
        if not rt.runs.hop_done(run_id, agent):
            return agent
        agent = handed_on(journal, run_id, flow, agent)
    return None


def handed_on(journal: HopJournal, run_id: str, flow: Workflow, agent: str) -> str | None:
    """The agent ``agent``'s hop handed off to, as the journal shows it (published: ``sent`` or
    ``received``), else None. A branch's agents hand off one at a time."""
    for edge in flow.plan(agent).edges:
        for target in edge.to if not edge.fan_out else ():
            delivery = journal.delivery(run_id, target)
            if delivery is not None and delivery.state != "sending":
                return target
    return None


def branch_stop(run: Run, flow: Workflow, fan_out: HandOff) -> HopOutcome | None:
    """The first stop in a branch of the fan-out (at any agent of it), as the join's (and the
    run's) outcome."""
    inside = {a for head in fan_out.to for a in branch_agents(flow, head)}
    for event in run.events:
        if isinstance(event.detail, BranchEnded) and event.agent in inside:
            return HopOutcome(event.detail.status, event.detail.reason)  # type: ignore[arg-type]
    return None
