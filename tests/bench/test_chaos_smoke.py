"""The chaos benchmark runs with one fault of each kind on RabbitMQ and reports every row.

Not a timed test and not the benchmark's goals (``python -m bench --only chaos`` reports those):
it checks the table's shape, the raw JSON, and that nothing was lost. RabbitMQ because its
recovery is immediate (on Redis a worker killed mid-hop waits out the 41 s visibility timeout,
too long for a smoke test). It starts its own RabbitMQ node (spare ports) and its own
``redis-server`` processes, never the machine's: skipped when either binary is missing, except
on CI (``CI=true``), where that fails.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from bench import chaos
from bench._servers import rabbitmq_server_binary


def _need(binary: str | None, what: str) -> None:
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"no {what}: CI must provide one")
        pytest.skip(f"no {what}: the chaos benchmark starts its own")


def test_one_fault_of_each_kind_loses_nothing(tmp_path: Path) -> None:
    _need(shutil.which("redis-server"), "redis-server binary")
    _need(rabbitmq_server_binary(), "rabbitmq-server")
    [table] = chaos.run(brokers=("rabbitmq",), counts=dict.fromkeys(chaos.KINDS, 1),
                        rate=2.0, spacing=3.0, work=tmp_path, raw=tmp_path / "raw")

    rows = [dict(zip(table.columns, row, strict=True)) for row in table.rows]
    assert [(r["broker"], r["fault"], r["injected"]) for r in rows] == \
        [("rabbitmq", kind, "1") for kind in chaos.KINDS]
    for row in rows:
        assert row["lost"] == "0", row
        assert int(row["accepted"]) <= int(row["sent"]) == 6, row
        assert row["terminal"] == row["accepted"], row
        assert row["died on their own"] == "0", row
    [written] = (tmp_path / "raw").glob("chaos-*.json")
    logs = written.with_name(f"{written.stem}-logs") / "rabbitmq"
    assert len(list((logs / "cluster" / "logs").glob("worker-*.log"))) >= 2, "workers' logs"
    raw = json.loads(written.read_text())
    assert raw["params"]["counts"] == dict.fromkeys(chaos.KINDS, 1)
    assert [(p["kind"], len(p["faults"])) for p in raw["phases"]] == \
        [(kind, 1) for kind in chaos.KINDS]
    assert all(p["probe_s"] is not None for p in raw["phases"])  # served before each phase
