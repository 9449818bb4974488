"""Workflow definitions: the step kinds as a discriminated union, and the run policies.

Loaded from ``config/workflows.yaml`` (shipped) and the user's ``orchestrator.yaml`` under
``workflows:``; every field has a description, unknown keys are errors with file and line.

Roles: a workflow may map each role to an ordered list of agents (``roles: {implementer:
[codex, claude, gemini]}``); a step that names a role and no agent runs the first, and the
next takes the step when one is not installed or not logged in (the engine's fallback). The
list is filled into each such step (``agent`` and ``fallback``) when the workflow is loaded,
so everything downstream reads one agent per step.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

_ID = r"^[A-Za-z][A-Za-z0-9_-]{0,63}$"


CHILD_STEPS = ("steps", "then", "else")  # where a step holds steps of its own


def _fill_roles(steps: Any, roles: dict[str, list[str]]) -> Any:
    """Give every step that names a role and no agent the role's agents (raw YAML data)."""
    if not isinstance(steps, list):
        return steps
    out = []
    for step in steps:
        if isinstance(step, dict):
            step = dict(step)
            role = step.get("role")
            if step.get("kind", "agent") == "agent" and "agent" not in step:
                if role is None:
                    raise ValueError(f"step {step.get('id')!r} names neither an agent nor a role")
                if role not in roles:
                    known = ", ".join(roles) or "none"
                    raise ValueError(
                        f"step {step.get('id')!r}: role {role!r} has no agents "
                        f"(this workflow's roles: {known}); give the step an agent or add the role"
                    )
                first, *rest = roles[role]
                step["agent"] = first
                step.setdefault("fallback", rest)
            for child in CHILD_STEPS:
                if child in step:
                    step[child] = _fill_roles(step[child], roles)
        out.append(step)
    return out


class _Step(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=_ID, description="Unique step id; templates read `steps.<id>`.")
    name: str | None = Field(default=None, description="Shown in the output instead of the id.")


class AgentStep(_Step):
    """Run one agent on a rendered prompt."""

    kind: Literal["agent"] = Field(default="agent", description="Step kind.")
    agent: str = Field(
        description="Agent name from the agents configuration (or the first of the role's list)."
    )
    fallback: list[str] = Field(
        default_factory=list,
        description="Agents that take the step, in order, when the one before is not installed "
        "or not logged in; filled from the workflow's `roles`.",
    )
    prompt: str = Field(
        default="{{ task }}", description="Jinja2 template (sandboxed) for the agent's prompt."
    )
    role: str | None = Field(default=None, description="implementer, reviewer, refiner, ...")
    timeout: float | None = Field(default=None, gt=0, description="Overrides the agent's timeout.")
    retries: int | None = Field(default=None, ge=0, le=10, description="Overrides its retries.")
    model: str | None = Field(default=None, description="Overrides the agent's model.")
    optional: bool = Field(
        default=False, description="A failure is recorded and the workflow goes on."
    )
    cache: bool = Field(default=False, description="Reuse a cached result for the same inputs.")
    write_code_blocks: bool = Field(
        default=False,
        description="Write files named by fenced code blocks in the answer (text-only agents).",
    )


class ParallelStep(_Step):
    """Run child steps at once."""

    kind: Literal["parallel"] = Field(description="Step kind.")
    steps: list[AgentStep] = Field(min_length=1, description="Child agent steps.")
    max_concurrency: int | None = Field(
        default=None, gt=0, description="At most this many at once."
    )
    isolation: Literal["worktree", "shared", "auto"] = Field(
        default="auto",
        description="worktree: each child in its own git worktree (auto in a git workspace).",
    )
    merge: Literal["all", "none", "pick"] = Field(
        default="all",
        description="Apply every child's changes, none, or only the one `pick_by` chooses.",
    )
    pick_by: str | None = Field(
        default=None,
        description="merge: pick — id of a later step whose answer names the winner "
        "(a line `PICK: <child id>`); without it the first successful child wins.",
    )


class LoopStep(_Step):
    """Repeat child steps until a condition holds or ``max_iterations`` is reached."""

    kind: Literal["loop"] = Field(description="Step kind.")
    steps: list[Step] = Field(min_length=1, description="Steps repeated each iteration.")
    max_iterations: int = Field(default=3, ge=1, le=100, description="Upper bound on iterations.")
    until: str | None = Field(
        default=None, description="Jinja2 expression; the loop ends when it is true."
    )
    min_suggestions_threshold: int | None = Field(
        default=None,
        ge=0,
        description="End when the review step's suggestion count falls below this.",
    )
    review_step: str | None = Field(
        default=None, description="The step whose answer is the review (for the threshold)."
    )


class BranchStep(_Step):
    """Choose steps by a condition."""

    kind: Literal["branch"] = Field(description="Step kind.")
    when: str = Field(description="Jinja2 expression.")
    then: list[Step] = Field(default_factory=list, description="Steps when true.")
    otherwise: list[Step] = Field(
        default_factory=list, alias="else", description="Steps when false."
    )

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class GateStep(_Step):
    """A human decision: approve, reject, or edit what comes next."""

    kind: Literal["gate"] = Field(description="Step kind.")
    message: str = Field(
        default="Continue?", description="Jinja2 template shown to the person deciding."
    )
    policy: Literal["approve", "reject", "fail"] | None = Field(
        default=None, description="Decision when nobody can answer (batch runs)."
    )


def _step_kind(value: Any) -> str:
    # `kind` may be left out for the common case, an agent step.
    if isinstance(value, dict):
        return str(value.get("kind", "agent"))
    return str(getattr(value, "kind", "agent"))


Step = Annotated[
    Annotated[AgentStep, Tag("agent")]
    | Annotated[ParallelStep, Tag("parallel")]
    | Annotated[LoopStep, Tag("loop")]
    | Annotated[BranchStep, Tag("branch")]
    | Annotated[GateStep, Tag("gate")],
    Discriminator(
        _step_kind,
        custom_error_type="step_kind",
        custom_error_message="kind must be one of agent, parallel, loop, branch, gate",
    ),
]


class Budget(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_cost_usd: float | None = Field(default=None, gt=0, description="Stop past this cost.")
    max_tokens: int | None = Field(default=None, gt=0, description="Stop past this many tokens.")
    max_wall_s: float | None = Field(default=None, gt=0, description="Stop past this wall time.")


class Limits(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_concurrency: int = Field(default=4, gt=0, description="Agents running at once, overall.")
    per_agent: dict[str, int] = Field(
        default_factory=dict, description="Agents running at once, per agent."
    )
    rate_per_minute: dict[str, float] = Field(
        default_factory=dict, description="Token-bucket rate limit: calls per minute per agent."
    )
    breaker_threshold: int = Field(
        default=3, gt=0, description="Consecutive failures that open an agent's circuit."
    )
    breaker_cooldown_s: float = Field(
        default=60, ge=0, description="Seconds before an open circuit lets one call through."
    )
    cache_ttl_s: float = Field(default=24 * 3600, gt=0, description="How long cached results live.")


class Workflow(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str = Field(default="", description="One line shown by `workflows`.")
    roles: dict[str, Annotated[list[str], Field(min_length=1)]] = Field(
        default_factory=dict,
        description="Role → agents in order: a step with that role and no agent runs the first; "
        "the next takes the step when one is not installed or not logged in.",
    )
    steps: list[Step] = Field(min_length=1, description="The steps, in order.")
    budget: Budget = Field(default_factory=Budget, description="Per-run budgets.")
    gate_policy: Literal["approve", "reject", "fail"] = Field(
        default="approve", description="Default gate decision when nobody can answer."
    )

    @model_validator(mode="before")
    @classmethod
    def _role_agents(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        roles = data.get("roles", {})
        if not isinstance(roles, dict):
            return data
        for role, agents in roles.items():
            if not isinstance(agents, list) or not agents:
                return data  # the field's own validation names the problem
            if len(set(map(str, agents))) != len(agents):
                raise ValueError(f"role {role!r} names an agent twice: {agents}")
        return {**data, "steps": _fill_roles(data.get("steps"), roles)}

    @model_validator(mode="after")
    def _unique_ids(self) -> Workflow:
        seen: set[str] = set()
        for step in iter_steps(self.steps):
            if isinstance(step, AgentStep) and step.agent in step.fallback:
                raise ValueError(f"step {step.id!r} names {step.agent!r} as its own fallback")
            if step.id in seen:
                raise ValueError(f"step id {step.id!r} is used twice")
            seen.add(step.id)
        return self


class WorkflowsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    workflows: dict[str, Workflow] = Field(default_factory=dict, description="By name.")
    limits: Limits = Field(default_factory=Limits, description="Concurrency, rate, breaker, cache.")


def iter_steps(
    steps: list[Step],
) -> list[AgentStep | ParallelStep | LoopStep | BranchStep | GateStep]:
    """Every step, nested ones included, depth first."""
    out: list[AgentStep | ParallelStep | LoopStep | BranchStep | GateStep] = []
    for step in steps:
        out.append(step)
        if isinstance(step, (LoopStep,)):
            out.extend(iter_steps(step.steps))
        elif isinstance(step, ParallelStep):
            out.extend(step.steps)
        elif isinstance(step, BranchStep):
            out.extend(iter_steps(step.then))
            out.extend(iter_steps(step.otherwise))
    return out


LoopStep.model_rebuild()
BranchStep.model_rebuild()
Workflow.model_rebuild()
