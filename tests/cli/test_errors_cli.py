"""The command line's contract for people and scripts: every command and subcommand has
``--help`` with an example, and bad input (settings, arguments, files, a missing or stale
system) is one clear line and a non-zero exit, never a traceback.

The invocations are independent, so each batch runs concurrently (a CLI process spends most of
its time importing)."""

from __future__ import annotations

import json
import re
import secrets
import socket
from pathlib import Path
from typing import NamedTuple

import pytest
from _cli import Result, clean_env, run_all

from orchestrator.runs import RunStore

# Groups whose help lacks an example in files other engineers own (infrabot/cli/_audit.py,
# _workflows.py): reported, expected to pass once they add one.
EXAMPLE_OWNED_ELSEWHERE = {"audit", "workflows"}


def subcommands(help_text: str) -> list[str]:
    """The names click lists under ``Commands:`` in a group's help."""
    _, found, rest = help_text.partition("\nCommands:\n")
    if not found:
        return []
    listing = rest.split("\n\n", 1)[0]  # an epilog may follow the listing
    return [m[1] for m in re.finditer(r"^  (\S+)", listing, re.MULTILINE)]


@pytest.fixture(scope="module")
def helps(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, ...], Result]:
    """``infrabot [COMMAND [SUBCOMMAND]] --help`` for every command the help itself lists."""
    env = clean_env(INFRABOT_STATE_DIR=str(tmp_path_factory.mktemp("help") / "state"))
    found: dict[tuple[str, ...], Result] = {}
    level: list[tuple[str, ...]] = [()]
    while level:
        results = run_all([((*path, "--help"), env) for path in level])
        found.update(zip(level, results, strict=True))
        level = [(*path, name) for path, result in zip(level, results, strict=True)
                 for name in subcommands(result.stdout)]
    return found


def test_help_lists_the_design_commands(helps: dict[tuple[str, ...], Result]) -> None:
    for command in ("demo", "serve", "worker", "simulate", "token", "revoke", "audit", "runs",
                    "check", "workflows"):
        assert (command,) in helps, sorted(helps)
    for path in (("simulate", "deploy"), ("simulate", "scenario"), ("simulate", "load"),
                 ("token", "user"), ("token", "assertion"), ("token", "inspect"),
                 ("runs", "list"), ("runs", "show")):
        assert path in helps, sorted(helps)


def test_every_help_exits_0_with_an_example(helps: dict[tuple[str, ...], Result]) -> None:
    missing = []
    for path, result in helps.items():
        result.ok()
        assert result.stdout.startswith("Usage: infrabot"), result
        if "Example" not in result.stdout and path not in {(g,) for g in
                                                           EXAMPLE_OWNED_ELSEWHERE}:
            missing.append(" ".join(path) or "(top level)")
    assert not missing, f"--help without an example: {missing}"


def test_groups_owned_elsewhere_have_an_example(helps: dict[tuple[str, ...], Result]) -> None:
    assert all("Example" in helps[(g,)].stdout for g in EXAMPLE_OWNED_ELSEWHERE)


# --- bad input: one line naming the problem, a non-zero exit, no traceback -----------------


class Bad(NamedTuple):
    args: tuple[str, ...]
    settings: dict[str, str]
    expected: str  # the error line starts with this (after "Error: ")


SCENARIOS = {"count": "events:\n  - {user: sam, count: abc}\n",
             "empty": "events: []\n",
             "yaml": "events: {user: sam\n"}


def _write_files(root: Path) -> str:
    """The files the cases read; returns the URL of a stale system (nothing listens there)."""
    (root / "a-file").write_text("")
    (root / "empty").mkdir(mode=0o700)  # a state directory where nothing ran yet
    for name, text in SCENARIOS.items():
        (root / f"{name}.yaml").write_text(text)
    (root / "latin.yaml").write_bytes(b"events: [{user: s\xe9bastien}]\n")  # Latin-1, not UTF-8
    (root / "audit-dir" / "audit.sqlite3").mkdir(mode=0o700, parents=True)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    for name in ("stale", "no-secret", "open-secret"):
        (root / name).mkdir(mode=0o700)
        (root / name / "endpoints.json").write_text(json.dumps({"auth": dead, "webhooks": dead}))
    for name, mode in (("stale", 0o600), ("open-secret", 0o644)):  # as serve left it; opened
        (root / name / "webhook_secret").write_text(secrets.token_hex(32) + "\n")
        (root / name / "webhook_secret").chmod(mode)
    RunStore(root / "stale" / "runs.sqlite3").close()  # serve made its run log, then died
    return dead


def _bad_cases(root: Path, dead: str) -> dict[str, Bad]:
    """Each case runs in a state directory of its own unless it names one."""
    stale, no_secret, open_secret = root / "stale", root / "no-secret", root / "open-secret"
    redis_broker = {"INFRABOT_BROKER_URL": "redis://127.0.0.1:6379/10"}
    no_system = "no running system: "
    empty = {"INFRABOT_STATE_DIR": str(root / "empty")}
    return {
        "max depth not a number": Bad(("token", "user", "user:sam"),
                                      {"INFRABOT_MAX_DEPTH": "abc"},
                                      "bad setting INFRABOT_MAX_DEPTH: "),
        "allowed algs not JSON": Bad(("token", "assertion", "agent:infrabot"),
                                     {"INFRABOT_ALLOWED_ALGS": "ES256"},
                                     "bad setting INFRABOT_ALLOWED_ALGS: not valid JSON"),
        "signing alg not allowed": Bad(("token", "user", "user:sam"),
                                       {"INFRABOT_ALLOWED_ALGS": '["RS256"]'},
                                       "bad settings: signing_alg must be one of allowed_algs"),
        "empty host": Bad(("serve", "--port-base", "0"), {"INFRABOT_HOST": ""},
                          "bad setting INFRABOT_HOST: must be a host name or an IPv4 address"),
        "issuer not a URL": Bad(("token", "user", "user:sam"), {"INFRABOT_ISSUER": "notaurl"},
                                "bad setting INFRABOT_ISSUER: must be an https:// (or http://) "
                                "URL"),
        "run log directory a file": Bad(
            ("serve", "--port-base", "0"), {"INFRABOT_DATABASE_URL": f"sqlite://{root / 'a-file'}"},
            f"bad_configuration: cannot make {root / 'a-file'} for the "),
        "audit database a directory": Bad(
            ("serve", "--port-base", "0"), {"INFRABOT_STATE_DIR": str(root / "audit-dir")},
            f"bad_configuration: {root / 'audit-dir' / 'audit.sqlite3'} is a directory: the "
            "audit database must be a file"),
        "service port for no service": Bad(
            ("serve",), {"INFRABOT_SERVICE_PORTS": '{"nosuch": 1}'},
            "bad_configuration: INFRABOT_SERVICE_PORTS names nosuch, which the workflows "
            "directory does not declare (its services: chat)"),
        "broker password not encoded": Bad(
            ("serve", "--port-base", "0"),
            {"INFRABOT_BROKER_URL": "amqp://infrabot:pa/ssword@127.0.0.1/"},
            "bad setting INFRABOT_BROKER_URL: must be amqp://user:password@host:port/vhost"),
        "port out of range": Bad(("serve", "--port-base", "0"), {"INFRABOT_AUTH_PORT": "99999"},
                                 "bad setting INFRABOT_AUTH_PORT: "),
        "service latency not milliseconds": Bad(
            ("serve", "--port-base", "0"), {"INFRABOT_SERVICE_LATENCY_MS": "50,datadog=fast"},
            "bad setting INFRABOT_SERVICE_LATENCY_MS: 'datadog=fast' is neither milliseconds "
            "(50) nor service=milliseconds (datadog=120)"),
        "service latency for no service": Bad(
            ("serve", "--port-base", "0"), {"INFRABOT_SERVICE_LATENCY_MS": "slack=80"},
            "bad_configuration: INFRABOT_SERVICE_LATENCY_MS: slack is not a service (the "
            "services: datadog, github, aws, pagerduty, chat)"),
        "state dir under a file": Bad(("token", "user", "user:sam"),
                                      {"INFRABOT_STATE_DIR": str(root / "a-file" / "state")},
                                      f"cannot use state directory {root / 'a-file' / 'state'}"),
        "directory file missing": Bad(("token", "assertion", "agent:infrabot"),
                                     {"INFRABOT_WORKFLOWS_DIR": str(root / "nope")},
                                     "bad_configuration: "),
        "bad run id": Bad(("token", "user", "user:sam", "--run", "bad id"), {},
                          "bad context value: "),
        "unknown may-act": Bad(("token", "user", "user:sam", "--may-act", "agent:nobody"), {},
                               "invalid_target (unknown_audience): "),
        "runs before any run": Bad(("runs", "list"), empty, "no runs yet: "),
        "state directory a file": Bad(("runs", "list"),
                                      {"INFRABOT_STATE_DIR": str(root / "a-file")},
                                      f"not a directory: {root / 'a-file'} (where "),
        "revoke nothing": Bad(("revoke",), {},
                              "give exactly one of --token, --jti, --user, --run"),
        "revoke two things": Bad(("revoke", "--user", "user:sam", "--jti", "abcdefgh"), {},
                                 "give exactly one of --token, --jti, --user, --run"),
        "revoke without a system": Bad(("revoke", "--user", "user:sam"), empty, no_system),
        "simulate without a system": Bad(("simulate", "deploy", "--user", "sam"), empty,
                                         no_system),
        "revoke at a stale system": Bad(("revoke", "--user", "user:sam"),
                                        {"INFRABOT_STATE_DIR": str(stale)},
                                        "temporarily_unavailable (authserver_unavailable): "),
        "simulate at a stale system": Bad(("simulate", "deploy", "--user", "sam"),
                                          {"INFRABOT_STATE_DIR": str(stale)},
                                          f"cannot reach the webhook receiver at {dead}: "),
        "simulate without a webhook secret": Bad(
            ("simulate", "deploy", "--user", "sam"), {"INFRABOT_STATE_DIR": str(no_secret)},
            "bad_configuration: no webhook secret: set INFRABOT_WEBHOOK_SECRET, or start "
            f"`infrabot serve` with this state directory once to create {no_secret}/"
            "webhook_secret"),
        "simulate with a secret others may read": Bad(
            ("simulate", "deploy", "--user", "sam"), {"INFRABOT_STATE_DIR": str(open_secret)},
            f"bad_configuration: the webhook secret {open_secret}/webhook_secret may be read by "
            "others (mode 0644); chmod 600 it"),
        "serve with a secret others may read": Bad(
            ("serve", "--port-base", "0"), {"INFRABOT_STATE_DIR": str(open_secret)},
            f"bad_configuration: the webhook secret {open_secret}/webhook_secret may be read by "
            "others (mode 0644); chmod 600 it"),
        "serve with the old public secret": Bad(
            ("serve", "--port-base", "0"),
            {"INFRABOT_WEBHOOK_SECRET": "infrabot-dev-webhook-secret"},
            "bad setting INFRABOT_WEBHOOK_SECRET: is the old public default, which anyone can "
            "sign with; unset it (serve then generates one) or set a random secret"),
        "simulate with a short secret": Bad(
            ("simulate", "deploy", "--user", "sam"), {"INFRABOT_WEBHOOK_SECRET": "hunter2"},
            "bad setting INFRABOT_WEBHOOK_SECRET: must be at least 16 characters"),
        "scenario count not a number": Bad(("simulate", "scenario", str(root / "count.yaml")),
                                           {}, f"{root / 'count.yaml'}: events[0].count "),
        "scenario without events": Bad(("simulate", "scenario", str(root / "empty.yaml")), {},
                                       f"{root / 'empty.yaml'}: no events"),
        "scenario not UTF-8": Bad(("simulate", "scenario", str(root / "latin.yaml")), {},
                                  f"bad_configuration: {root / 'latin.yaml'}: not UTF-8 text"),
        "scenario not YAML": Bad(("simulate", "scenario", str(root / "yaml.yaml")), {},
                                 f"bad_configuration: {root / 'yaml.yaml'}:2: not valid YAML"),
        "worker on the in-memory broker": Bad(
            ("worker",), {}, "a worker process needs a shared broker: set INFRABOT_BROKER_URL"),
        "worker on an unknown queue": Bad(("worker", "--queues", "nope"), redis_broker,
                                          "unknown queue nope; the directory's agents use "
                                          "argocd, cleanup, infrabot, notifier, rollback, scanner"),
        "demo report under a file": Bad(("demo", "--report", str(root / "a-file" / "x.html")),
                                        {}, f"cannot write the report {root / 'a-file'}"),
    }


CASE_NAMES = sorted(_bad_cases(Path("/unused"), "http://unused"))


@pytest.fixture(scope="module")
def bad_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Bad, Result]]:
    root = tmp_path_factory.mktemp("bad")
    cases = _bad_cases(root, _write_files(root))
    calls = []
    for name, case in cases.items():
        state = str(root / "states" / re.sub(r"\W+", "-", name))
        calls.append((case.args, clean_env(**{"INFRABOT_STATE_DIR": state, **case.settings})))
    return dict(zip(cases, zip(cases.values(), run_all(calls), strict=True), strict=True))


@pytest.mark.parametrize("name", CASE_NAMES)
def test_bad_input_is_one_error_line_and_exit_1(bad_results: dict[str, tuple[Bad, Result]],
                                                name: str) -> None:
    case, result = bad_results[name]
    assert result.returncode == 1, result
    assert result.error_line().startswith(case.expected), result
    assert result.stdout == "", result


USAGE: dict[str, tuple[str, ...]] = {
    "unknown command": ("nosuch",),
    "missing argument": ("token", "user"),
    "count out of range": ("simulate", "load", "--count", "0"),
    "rate not a number": ("simulate", "load", "--rate", "nan"),
    "timeout not a number": ("check", "--timeout", "nan"),
    "missing scenario file": ("simulate", "scenario", "/nonexistent/scenario.yaml"),
    "port base out of range": ("serve", "--port-base", "65535"),
}


@pytest.fixture(scope="module")
def usage_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Result]:
    env = clean_env(INFRABOT_STATE_DIR=str(tmp_path_factory.mktemp("usage") / "state"))
    return dict(zip(USAGE, run_all([(args, env) for args in USAGE.values()]), strict=True))


@pytest.mark.parametrize("name", sorted(USAGE))
def test_usage_errors_exit_2_with_the_error_last(usage_results: dict[str, Result],
                                                 name: str) -> None:
    result = usage_results[name]
    assert result.returncode == 2, result
    result.no_traceback()
    assert result.stderr.strip().splitlines()[-1].startswith("Error: "), result
    assert result.stdout == "", result

