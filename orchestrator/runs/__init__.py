"""The run event log: what each run of a workflow did, hop by hop, shared by every process.

:class:`RunStore` keeps runs and their events in ``<state_dir>/runs.sqlite3`` (SQLite, WAL), safe
for the orchestrator, Celery workers and the CLI at once. Events never hold a token.
:class:`RunEvent` details are typed, one model per kind (:data:`EventDetail`,
docs/run-events.md). :class:`HopJournal` records each hop's steps and hand-offs in the same file (docs/journal.md).
:func:`render_run` and :func:`render_runs` turn runs into rich renderables for
``infrabot runs show`` and ``infrabot runs list``.
"""

from orchestrator.runs._deliveries import DeliveryClaim, new_run_id
from orchestrator.runs._ends import DEADLINE_EXCEEDED, ENDED, SUPERSEDED, EndedRun
from orchestrator.runs._events import (
    DENIALS,
    EVENT_KINDS,
    HAND_OFF,
    BranchEnded,
    BranchTaken,
    CallDenied,
    Called,
    EventDetail,
    EventDetailError,
    Exchanged,
    ExchangeDenied,
    Finished,
    HandedOff,
    Retrying,
    RootDenied,
    RootGranted,
    Started,
    StepSkipped,
    Timed,
    parse_detail,
)
from orchestrator.runs._journal import DELIVERY_STEP, HopJournal, StepConflict
from orchestrator.runs._model import (
    STATUSES,
    TERMINAL_STATUSES,
    EventKind,
    Mode,
    Run,
    RunEvent,
    RunExists,
    RunOrigin,
    RunStatus,
    UnknownRun,
    shown_claims,
)
from orchestrator.runs._render import render_run, render_runs, summarize
from orchestrator.runs._resume import STOPS, Resume, StepRecord, idempotency_key, resume_point
from orchestrator.runs._spans import SpanLog, SpanRecord
from orchestrator.runs._store import RunStore
from orchestrator.runs._waterfall import WaterfallRow, render_waterfall, waterfall_rows

__all__ = [
    "DEADLINE_EXCEEDED",
    "DELIVERY_STEP",
    "DENIALS",
    "ENDED",
    "EVENT_KINDS",
    "HAND_OFF",
    "STATUSES",
    "STOPS",
    "SUPERSEDED",
    "TERMINAL_STATUSES",
    "BranchEnded",
    "BranchTaken",
    "CallDenied",
    "Called",
    "DeliveryClaim",
    "EndedRun",
    "EventDetail",
    "EventDetailError",
    "EventKind",
    "ExchangeDenied",
    "Exchanged",
    "Finished",
    "HandedOff",
    "HopJournal",
    "Mode",
    "Resume",
    "Retrying",
    "RootDenied",
    "RootGranted",
    "Run",
    "RunEvent",
    "RunExists",
    "RunOrigin",
    "RunStatus",
    "RunStore",
    "SpanLog",
    "SpanRecord",
    "Started",
    "StepConflict",
    "StepRecord",
    "StepSkipped",
    "Timed",
    "UnknownRun",
    "WaterfallRow",
    "idempotency_key",
    "new_run_id",
    "parse_detail",
    "render_run",
    "render_runs",
    "render_waterfall",
    "resume_point",
    "shown_claims",
    "summarize",
    "waterfall_rows",
]
