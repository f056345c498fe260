"""The run deadline (``orchestrator._deadline``), embedded, no Redis needed: a run whose queued
work is never performed (here: nothing consumes the queue, as when a broker lost the message)
is revoked and ended ``failed`` (``deadline_exceeded``) once ``run_deadline_seconds`` have
passed, with the revocation on record; a run that finished is never touched by it. The deadline's
clock is moved (``MovableClock``) instead of waited out; the sweeps run on their real thread. The
same fix, under a real Redis restart and real time, is in ``test_redis_restart``."""

from __future__ import annotations

from pathlib import Path

from e2e._harness import accepted_run_id, deployment, embedded_settings, events_of, post_webhook

from infrabot.system import running_system
from orchestrator.runs import Finished
from reliability._clock import MovableClock
from reliability._probes import root_for_infrabot, system_clients

DEADLINE = 5  # the smallest the setting allows


def test_a_run_whose_work_was_lost_ends_at_its_deadline(tmp_path: Path) -> None:
    settings = embedded_settings(tmp_path / "state", run_deadline_seconds=DEADLINE)
    clock = MovableClock()
    with running_system(settings, embedded_worker=False, deadline_clock=clock) as system:
        run_id = accepted_run_id(post_webhook(system.webhooks_url, deployment("sam")))
        clock.advance(DEADLINE - 3)  # 3 s of real time to spare on a slow machine
        clock.wait_reads(2)  # a whole sweep before the deadline: not ended yet
        assert system.runtime.runs.get(run_id).status == "running"
        clock.advance(3.5)
        run = system.runtime.runs.wait(run_id, timeout=10)
        assert (run.status, run.reason) == \
            ("failed", f"deadline_exceeded: not finished within {DEADLINE} s")
        assert events_of(run, "finished") == [Finished(status="failed", reason=run.reason)]
        assert run.events[-1].agent is None  # ended by the orchestrator, not an agent
        # revoked: any token of the run is refused from now on
        late = root_for_infrabot(system_clients(system), run_id)["access_token"]
        with system_clients(system)("client:orchestrator") as orchestrator:
            assert orchestrator.introspect(late) == {"active": False}
        records = system.stack.audit.query(run_id=run_id)
        revoke = [r for r in records if r.service == "orchestrator"]
        assert [(r.action, r.decision, r.reason, r.resource, r.performed_by, r.on_behalf_of)
                for r in revoke] == [("revoke", "allow", "run_revoked", f"run_id:{run_id}",
                                      "client:orchestrator", "user:sam")]
        assert run.trace_id and revoke[0].context["trace_id"] == run.trace_id  # joins the trace
        assert system.stack.audit.verify().ok


def test_a_finished_run_is_never_touched_by_the_deadline(tmp_path: Path) -> None:
    settings = embedded_settings(tmp_path / "state", run_deadline_seconds=DEADLINE)
    clock = MovableClock()
    with running_system(settings, deadline_clock=clock) as system:
        run_id = accepted_run_id(post_webhook(system.webhooks_url, deployment("sam")))
        run = system.runtime.runs.wait(run_id, timeout=DEADLINE)
        assert (run.status, run.reason) == ("succeeded", "ok")
        clock.advance(DEADLINE + 1.0)
        clock.wait_reads(3)  # several sweeps past the deadline
        assert system.runtime.runs.get(run_id) == run
        # its one revocation is its end's (wait returns a run once that is recorded)
        assert [r.request_id for r in system.stack.audit.query(run_id=run_id)
                if r.service == "orchestrator"] == [f"{run_id}.ended"]
