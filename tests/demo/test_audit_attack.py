"""The demo's attack on the audit trail: a record rewritten in a copy of the demo's database,
the chain recomputed, and verification refusing the copy by the signed checkpoints."""

from __future__ import annotations

from infrabot.demo import DemoResult


def test_a_rewritten_audit_record_is_caught_by_verify(demo_result: DemoResult) -> None:
    (attack,) = [a for a in demo_result.attacks if a.name == "rewritten audit record"]
    assert attack.refused, attack
    assert (attack.expected, attack.status, attack.code, attack.reason) == (
        "rewritten", 1, "audit_verify_failed", "rewritten")
    assert "deny → allow" in attack.attempt and "recomputes the hash chain" in attack.attempt
    assert demo_result.audit_intact  # the demo's own database was not touched
