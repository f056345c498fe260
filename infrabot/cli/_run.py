"""``infrabot run WORKFLOW --user-token FILE|-``: start a workflow on behalf of the bearer of a
token from a trusted identity provider (docs/federation.md), as ``POST /runs`` on the running
receiver does, then wait for the run to end.

The token is read from FILE, or from standard input with ``-`` (so it is never in the process
list or the shell history); it is sent once, to the receiver, and never printed or stored. The
run id goes to stdout; everything meant for a person to stderr. Exit 0 when the run succeeded,
1 otherwise (refused, denied, failed or not ended in time), with one line saying why.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
import httpx

from infrabot.cli._common import (
    Between,
    CommandError,
    endpoints,
    load_settings,
    run_log_missing,
    state_dir_option,
)
from orchestrator.errors import StoreMissing
from orchestrator.runs import RunStore

MAX_TOKEN_BYTES = 64 * 1024


def _read_token(source: str) -> str:
    try:
        text = sys.stdin.read(MAX_TOKEN_BYTES + 1) if source == "-" else \
            Path(source).read_text()[: MAX_TOKEN_BYTES + 1]
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"cannot read the user token from {source}: "
                           f"{getattr(exc, 'strerror', None) or exc}") from None
    token = text.strip()
    if not token or len(token) > MAX_TOKEN_BYTES or any(c.isspace() for c in token):
        raise CommandError(f"{'standard input' if source == '-' else source} does not hold "
                           "one token")
    return token


@click.command("run")
@click.argument("workflow")
@click.option("--user-token", "token_source", required=True, metavar="FILE|-",
              help="Your identity provider's token: a file holding it, or - for stdin.")
@click.option("--env", "environment", required=True, help="The environment the run acts in.")
@click.option("--repo", "repository", default="acme/service-x", show_default=True,
              help="The repository (owner/name).")
@click.option("--commit", default="9f2c1e7", show_default=True, help="The commit.")
@click.option("--service", default=None, help="The service (default: the repository's name).")
@click.option("--pr", type=click.IntRange(1), default=None, help="The pull request, if any.")
@click.option("--timeout", type=Between(1, 600), default=30, show_default=True,
              help="Seconds to wait for the run to end.")
@click.option("--json", "as_json", is_flag=True, help="Print {run_id, status, reason} as JSON.")
@state_dir_option
def run(workflow: str, token_source: str, environment: str, repository: str, commit: str,
        service: str | None, pr: int | None, timeout: float, as_json: bool,
        state_dir: Path | None) -> None:
    """Start WORKFLOW as yourself, with your identity provider's token.

    \b
    Example:
      infrabot run manual-check --env staging --user-token - < token.jwt
    """
    settings = load_settings(state_dir, state="existing")
    token = _read_token(token_source)
    url = endpoints(settings).get("webhooks")
    if url is None:
        raise CommandError(f"{settings.endpoints_file} names no webhook receiver")
    parameters = {"environment": environment, "repository": repository, "commit": commit,
                  **({"service": service} if service else {}), **({"pr": pr} if pr else {})}
    try:  # opened before anything is sent, read-only: it only follows the run
        store = RunStore(settings.runs_target, read_only=True)
    except StoreMissing as exc:
        raise run_log_missing(exc) from None
    with store:
        run_id = _start(url, token, workflow, parameters)
        click.echo(f"run {run_id} started; waiting for it to end", err=True)
        try:
            ended = store.wait(run_id, timeout)
        except TimeoutError as exc:
            raise CommandError(str(exc)) from None
    if as_json:
        click.echo(json.dumps({"run_id": run_id, "status": ended.status,
                               "reason": ended.reason}))
    else:
        click.echo(run_id)
    if ended.status != "succeeded":
        raise CommandError(f"run {run_id} ended {ended.status}: {ended.reason}")


def _start(url: str, token: str, workflow: str, parameters: dict[str, object]) -> str:
    """``POST /runs`` on the receiver at ``url``: the run id, or one line why not."""
    try:
        response = httpx.post(f"{url}/runs", json={"workflow": workflow,
                                                   "parameters": parameters},
                              headers={"Authorization": f"Bearer {token}"}, timeout=30)
    except httpx.HTTPError as exc:
        raise CommandError(f"cannot reach the receiver at {url}: {type(exc).__name__} "
                           "(is `infrabot serve` running?)") from None
    body = response.json() if response.headers.get("content-type", "").startswith(
        "application/json") else {}
    if response.status_code != 202:
        raise CommandError(f"refused ({response.status_code} {body.get('reason', 'error')}): "
                           f"{body.get('error_description', response.reason_phrase)}")
    return str(body["run_id"])
