"""The one description of a run: built once at each edge, executed by :mod:`.service`.

The magic (with and without ``-a``), the dashboard's Run button, ``run``/``arun``,
``run_agent``/``arun_agent``, ``orchestrator-nb exec`` and a batch task each build a
:class:`RunRequest`; nothing else decides what a run is. The request is frozen: it says what
to do (task, workflow or one agent, workspace, session turn and whether it follows up, the
rehearsal, budgets, limits, gate policy, isolation, trust), never how far it got.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from ..config import Settings
from ..errors import ConfigError
from ..observe.checks import check_name, check_task, existing_workspace
from ..sessions import FollowupDecision, ResumePoint, Session
from ..workflow.models import Budget
from ..workspace.lock import Isolation

GatePolicy = Literal["approve", "reject", "fail"]
_BUDGET_KEYS = ("max_cost_usd", "max_tokens", "max_wall_s")
OVERRIDE_KEYS = frozenset({"max_iterations", "gate_policy", "timeout", *_BUDGET_KEYS})


@dataclass(frozen=True)
class RunOptions:
    """Per-run settings on top of the workflow's own.

    ``timeout``: the whole run's wall-clock limit in seconds; passing it ends the run with
    outcome ``timeout``. ``isolation``: "shared" (runs in one workspace take turns) or
    "worktree" (this run works in its own git worktree, applied at the end).
    ``agent_options``: agent config fields for a one-agent run
    (``retries``, ``idle_timeout``, ``model``, ``timeout`` of the CLI, ...).
    """

    budget: Budget = field(default_factory=Budget)
    max_iterations: int | None = None
    gate_policy: GatePolicy | None = None
    timeout: float | None = None
    isolation: Isolation = "shared"
    agent_options: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_overrides(cls, overrides: Mapping[str, Any]) -> RunOptions:
        """The typed form of the keyword overrides ``run``/``arun`` and the journal carry."""
        unknown = set(overrides) - OVERRIDE_KEYS
        if unknown:
            raise ConfigError(
                f"unknown override(s) {', '.join(sorted(unknown))}",
                key="overrides",
                hint=f"accepted: {', '.join(sorted(OVERRIDE_KEYS))}",
            )
        budget = {k: overrides[k] for k in _BUDGET_KEYS if overrides.get(k) is not None}
        try:
            typed_budget = Budget.model_validate(budget)
        except Exception as exc:
            raise ConfigError(f"bad budget: {exc}", key="budget") from None
        timeout = overrides.get("timeout")
        if timeout is not None and not (isinstance(timeout, (int, float)) and timeout > 0):
            raise ConfigError(f"timeout must be a number of seconds above 0, not {timeout!r}")
        return cls(
            budget=typed_budget,
            max_iterations=overrides.get("max_iterations"),
            gate_policy=overrides.get("gate_policy"),
            timeout=timeout,
        )

    def workflow_overrides(self) -> dict[str, Any]:
        """What changes the workflow definition (budgets, loops, gate policy)."""
        out: dict[str, Any] = self.budget.model_dump(exclude_none=True)
        if self.max_iterations is not None:
            out["max_iterations"] = self.max_iterations
        if self.gate_policy is not None:
            out["gate_policy"] = self.gate_policy
        return out


@dataclass(frozen=True)
class RunRequest:
    """One run, as asked for. Build it with :meth:`build` (which checks it)."""

    task: str  # as the user wrote it (what the session records)
    workspace: Path
    workflow: str = "default"
    agent: str | None = None  # a one-step run of this agent instead of a workflow
    step: str | None = None  # the one step's id (rehearsal scripts match on it)
    settings: Settings | None = None
    config: str | None = None  # a config file path when settings are not given
    trust: bool | None = None
    session: Session | None = None
    decision: FollowupDecision | None = None
    # Explicit native sessions to resume (run_agent's ``resume=``); a follow-up's come from the
    # session, for this workspace.
    resume: Mapping[str, ResumePoint] | None = None
    rehearsal: Any = None  # a scenario name or path, a Scenario, or a running rehearsal
    options: RunOptions = field(default_factory=RunOptions)
    dry_run: bool = False
    variables: Mapping[str, Any] = field(default_factory=dict)
    approvals: Any = None  # ACP permission requests: a policy or an async callable
    # Continue this run from its journal (its finished steps are not run again); built by
    # :meth:`for_resume`, never with a session (a resumed run is not a new turn).
    resume_run: str | None = None

    @property
    def followup(self) -> bool:
        return bool(self.decision is not None and self.decision.followup)

    @property
    def name(self) -> str:
        """The workflow name the run is journaled under (``agent:NAME`` for one agent)."""
        return f"agent:{self.agent}" if self.agent else self.workflow

    @property
    def label(self) -> str:
        return f"agent {self.agent}" if self.agent else f"workflow {self.workflow}"

    @property
    def prompt(self) -> str:
        """What the agents get: a follow-up carries the previous turn of this workspace first."""
        if self.followup and self.session is not None:
            return self.session.followup_task(self.task, workspace=self.workspace)
        return self.task

    @property
    def followup_context(self) -> str:
        """The previous turn's summary, for the agents of a follow-up that do not resume their
        own conversation (the engine gives it only to those); empty for a new task."""
        if self.followup and self.session is not None:
            return self.session.followup_context(workspace=self.workspace)
        return ""

    def resume_points(self) -> dict[str, ResumePoint]:
        """Native sessions to resume: only a follow-up's, only of this workspace."""
        points = dict(self.resume or {})
        if self.followup and self.session is not None:
            for agent, point in self.session.resume_points(self.workspace).items():
                points.setdefault(agent, point)
        return points

    @classmethod
    def for_resume(
        cls,
        run_id: str,
        *,
        workspace: str | os.PathLike[str] = ".",
        config: Settings | str | os.PathLike[str] | None = None,
        **fields: Any,
    ) -> RunRequest:
        """The request that continues run ``run_id``: task, workflow or agent, budgets and
        timeout come from its journal, so the resumed run is the run that was asked for."""
        from ..workflow.journal import RunJournal
        from ..workspace.state import StateDir

        check_name("run", run_id)  # it becomes a folder name: nothing may climb out
        root = existing_workspace(workspace)
        journal = RunJournal(StateDir(root).root / "runs", run_id)
        meta = journal.meta()
        task = journal.task(meta)
        overrides = dict(meta.get("overrides") or {})
        request = cls.build(
            task,
            workflow=None if meta.get("agent") else meta["workflow"],
            agent=meta.get("agent"),
            step=meta.get("step"),
            workspace=root,
            config=config,
            options=RunOptions.from_overrides({**overrides, "timeout": meta.get("timeout")}),
            **fields,
        )
        return replace(request, resume_run=run_id)

    @classmethod
    def build(
        cls,
        task: str,
        *,
        workflow: str | None = None,
        agent: str | None = None,
        workspace: str | os.PathLike[str] = ".",
        config: Settings | str | os.PathLike[str] | None = None,
        session: Session | str | None = None,
        force_followup: bool | None = None,
        decision: FollowupDecision | None = None,
        **fields: Any,
    ) -> RunRequest:
        """Check everything a run needs before anything starts.

        With a ``session``, the follow-up decision is taken here (``force_followup`` is
        ``--followup``/``--new``) unless ``decision`` is given; without one, a run is a new task.
        """
        check_task(task)
        if agent is not None and workflow not in (None, "default"):
            raise ConfigError("pass either a workflow or an agent, not both", key="agent")
        if agent is not None:
            check_name("agent", agent)
        if workflow is not None:
            check_name("workflow", workflow)
        if fields.get("step") is not None:
            check_name("step", fields["step"])
        root = existing_workspace(workspace)
        settings, config_path = None, None
        if isinstance(config, Settings):
            settings = config
        elif config is not None:
            config_path = os.fspath(config)
        if isinstance(session, str):  # a name, as `-s NAME` gives: the kernel's session of it
            from ..sessions import default_store

            check_name("session", session)
            session = default_store().get_or_create(session)
        elif session is not None and not isinstance(session, Session):
            raise ConfigError(
                f"session must be a Session or a session's name, not {type(session).__name__}",
                key="session",
                hint="pass session='NAME' (made if new) or a Session from the session store",
            )
        if session is not None and decision is None:
            from ..sessions import decide_followup

            decision = decide_followup(task, session, force=force_followup, workspace=root)
        return cls(
            task=task,
            workspace=root,
            workflow=workflow or "default",
            agent=agent,
            settings=settings,
            config=config_path,
            session=session,
            decision=decision,
            **fields,
        )


__all__ = ["OVERRIDE_KEYS", "GatePolicy", "Isolation", "ResumePoint", "RunOptions", "RunRequest"]
