"""Mock GitHub (REST API): pull requests, issue comments, deployment statuses, branch deletion.

Seeded with ``acme/service-x``: pull request #124 (head ``feature/faster-cache`` at the deployed
commit), deployments 9001 to ``prod``, 9002 to ``staging`` and 9003 to ``canary``, and
branches ``main``, ``feature/faster-cache`` and ``release/2024-q4``. Comments and statuses are
attributed to the acting agent as a bot user, and :class:`GitHubState` also keeps on whose
behalf each was made. Each pull request keeps its most
recent :data:`~mock_services._recent.LIMIT` comments and each deployment as many statuses.

Everything under ``/repos/{owner}/{repo}`` is owned by that repository; a deployment is also
owned by its environment.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field

from mock_services._access import Caller
from mock_services._bearer import ApiError
from mock_services._numbers import ID_BOUNDS, MAX_ID
from mock_services._recent import RecentList, add_attributed
from mock_services._routing import CallerDep, ServiceRouter
from mock_services._targets import numbers
from orchestrator.identity import ResourceAttributes

API = "https://api.github.com"
Repo = tuple[str, str]
SERVICE_X: Repo = ("acme", "service-x")
Number = Annotated[int, Path(**ID_BOUNDS)]


class User(BaseModel):
    login: str
    type: Literal["User", "Bot"] = "User"


class Ref(BaseModel):
    ref: str
    sha: str


class PullRequest(BaseModel):
    id: int
    number: int
    state: Literal["open", "closed"]
    title: str
    body: str
    user: User
    head: Ref
    base: Ref
    merged: bool
    html_url: str
    url: str


class CommentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    body: str = Field(min_length=1, max_length=65536)


class Comment(BaseModel):
    id: int
    body: str
    user: User
    created_at: str
    html_url: str
    issue_url: str


class StatusIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    state: Literal["error", "failure", "inactive", "in_progress", "queued", "pending", "success"]
    description: str = Field("", max_length=140)
    environment: str | None = Field(None, max_length=100)
    log_url: str | None = Field(None, max_length=500)
    environment_url: str | None = Field(None, max_length=500)


class DeploymentStatus(BaseModel):
    id: int
    state: str
    description: str
    environment: str
    log_url: str | None
    environment_url: str | None
    creator: User
    created_at: str
    deployment_url: str


@dataclass
class GitHubState:
    clock: Callable[[], float]
    pulls: dict[tuple[str, str, int], PullRequest] = field(default_factory=dict)
    comments: dict[tuple[str, str, int], RecentList[Comment]] = field(default_factory=dict)
    deployments: dict[tuple[str, str, int], str] = field(default_factory=dict)  # -> environment
    statuses: dict[tuple[str, str, int], RecentList[DeploymentStatus]] = field(
        default_factory=dict)  # newest first, as GitHub lists them
    branches: dict[Repo, dict[str, str]] = field(default_factory=dict)  # -> branch -> sha
    # "comment:1" -> who; a comment's or status's entry goes when the comment or status does.
    attribution: dict[str, tuple[str, str]] = field(default_factory=dict)
    _next_id: int = 1

    def next_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def now(self) -> str:
        return datetime.fromtimestamp(self.clock(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _seed(state: GitHubState) -> None:
    owner, repo = SERVICE_X
    url = f"{API}/repos/{owner}/{repo}"
    state.pulls[(owner, repo, 124)] = PullRequest(
        id=1_024_124, number=124, state="open", title="Faster cache for service-x",
        body="Cuts p99 latency by caching lookups.", user=User(login="sam"),
        head=Ref(ref="feature/faster-cache", sha="9f2c1e7"), base=Ref(ref="main", sha="41aa0c2"),
        merged=False, html_url=f"https://github.com/{owner}/{repo}/pull/124",
        url=f"{url}/pulls/124")
    state.comments[(owner, repo, 124)] = RecentList()
    for deployment_id, environment in ((9001, "prod"), (9002, "staging"), (9003, "canary")):
        state.deployments[(owner, repo, deployment_id)] = environment
        state.statuses[(owner, repo, deployment_id)] = RecentList(newest_first=True)
    state.branches[SERVICE_X] = {"main": "41aa0c2", "feature/faster-cache": "9f2c1e7",
                                 "release/2024-q4": "0b3d5e1"}


def _bot(caller: Caller) -> User:
    return User(login=caller.actor.split(":", 1)[1] + "[bot]", type="Bot")


def build(router: ServiceRouter, clock: Callable[[], float]) -> GitHubState:
    state = GitHubState(clock)
    _seed(state)

    def pull_key(owner: str, repo: str, number: int) -> tuple[str, str, int]:
        if (owner, repo, number) not in state.comments:
            raise ApiError(404, "not_found", "Not Found")
        return owner, repo, number

    def deployment_key(owner: str, repo: str, deployment_id: int) -> tuple[str, str, int]:
        if (owner, repo, deployment_id) not in state.deployments:
            raise ApiError(404, "not_found", "Not Found")
        return owner, repo, deployment_id

    @router.resolves("github.repository")
    def repository(named: tuple[object, ...]) -> list[ResourceAttributes]:
        full = "/".join(str(part) for part in named)  # whole: the handler's repository
        return [ResourceAttributes(resource=f"github:{full}", repository=full)]

    @router.resolves("github.deployment")
    def deployment(named: tuple[object, ...]) -> list[ResourceAttributes]:
        owner, repo = (str(part) for part in named[:2])
        ids = numbers(named[2], MAX_ID)
        return [ResourceAttributes(resource=f"github:{owner}/{repo}:deployment-{i}",
                                   repository=f"{owner}/{repo}",
                                   environment=state.deployments.get((owner, repo, i)))
                for i in ids] or repository(named[:2])

    @router.route("github.pull.read")
    async def get_pull(owner: str, repo: str, pull_number: Number,
                       caller: CallerDep) -> PullRequest:
        pull = state.pulls.get((owner, repo, pull_number))
        if pull is None:
            raise ApiError(404, "not_found", "Not Found")
        return pull

    @router.route("github.comment.create", status_code=201)
    async def create_comment(owner: str, repo: str, issue_number: Number, body: CommentIn,
                             caller: CallerDep) -> Comment:
        key = pull_key(owner, repo, issue_number)
        cid = state.next_id()
        issue_url = f"{API}/repos/{owner}/{repo}/issues/{issue_number}"
        comment = Comment(
            id=cid, body=body.body, user=_bot(caller), created_at=state.now(),
            issue_url=issue_url,
            html_url=f"https://github.com/{owner}/{repo}/pull/{issue_number}#issuecomment-{cid}")
        add_attributed(state.comments[key], comment, state.attribution, "comment",
                       (caller.actor, caller.principal))
        return comment

    @router.route("github.comment.list")
    async def list_comments(owner: str, repo: str, issue_number: Number,
                            caller: CallerDep) -> list[Comment]:
        return list(state.comments[pull_key(owner, repo, issue_number)])

    @router.route("github.deployment_status.create", status_code=201)
    async def create_status(owner: str, repo: str, deployment_id: Number, body: StatusIn,
                            caller: CallerDep) -> DeploymentStatus:
        key = deployment_key(owner, repo, deployment_id)
        sid = state.next_id()
        status = DeploymentStatus(
            id=sid, state=body.state, description=body.description,
            environment=body.environment or state.deployments[key], log_url=body.log_url,
            environment_url=body.environment_url, creator=_bot(caller), created_at=state.now(),
            deployment_url=f"{API}/repos/{owner}/{repo}/deployments/{deployment_id}")
        add_attributed(state.statuses[key], status, state.attribution, "status",
                       (caller.actor, caller.principal))
        return status

    @router.route("github.deployment_status.list")
    async def list_statuses(owner: str, repo: str, deployment_id: Number,
                            caller: CallerDep) -> list[DeploymentStatus]:
        return list(state.statuses[deployment_key(owner, repo, deployment_id)])

    @router.route("github.branch.delete", status_code=204)
    async def delete_branch(owner: str, repo: str, branch: str, caller: CallerDep) -> None:
        branches = state.branches.get((owner, repo))
        if branches is None:
            raise ApiError(404, "not_found", "Not Found")
        if branch not in branches:
            raise ApiError(422, "reference_does_not_exist", "Reference does not exist")
        if branch == "main":
            raise ApiError(422, "default_branch", "Cannot delete the default branch")
        del branches[branch]
        state.attribution[f"branch:{owner}/{repo}:{branch}"] = (caller.actor, caller.principal)

    return state
