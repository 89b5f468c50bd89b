"""An interpreter of SageMaker pipeline definitions: what the local engine executes.

The local engine runs the definition `deploy_pipeline` upserted, read back
with DescribePipeline, not a sequence of its own; so a step name, a property
reference or a condition that SageMaker would trip over fails here first.

What it does, as SageMaker Pipelines does:
- parameters: the definition's defaults, overridden by the values a
  StartPipelineExecution passes (strings, converted by the parameter's
  type); a parameter without default and without value is an error;
- order: a step runs once every step it depends on has succeeded, where the
  dependencies are its `DependsOn`, every `Steps.<X>` a `Get` in its arguments
  names, and, for a step in a condition's branch, that condition having
  chosen the branch. A step whose dependency failed or never ran does not run
  (and is not listed, as in ListPipelineExecutionSteps); once a step fails
  or stops, no further step starts;
- expressions: `Get` of `Parameters.*` and `Steps.<X>.<property path>`
  (properties are the job's request and what the job reported, e.g.
  `ModelArtifacts.S3ModelArtifacts`, `BestTrainingJob.TrainingJobName`),
  `Std:Join`, `Std:JsonGet` on a step's `PropertyFiles`;
- conditions: Equals, GreaterThan(OrEqualTo), LessThan(OrEqualTo), In, Not, Or;
- Fail: the step fails with its ErrorMessage, and so does the execution.

The jobs themselves (Processing, Training, Tuning, RegisterModel) are run by
the executors the caller passes; each returns a `StepOutcome`. No Django, no
AWS calls here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

SUCCEEDED, FAILED, STOPPED, EXECUTING = "Succeeded", "Failed", "Stopped", "Executing"
JOB_TYPES = ("Processing", "Training", "Tuning", "RegisterModel")


class DefinitionError(Exception):
    """The definition (or the values passed to it) cannot be executed."""


@dataclass
class StepOutcome:
    status: str  # Succeeded | Failed | Stopped
    failure_reason: str = ""
    metadata: dict = field(default_factory=dict)  # ListPipelineExecutionSteps Metadata, e.g. {"TrainingJob": {...}}
    properties: dict = field(default_factory=dict)  # added to the step's properties (the Describe* response)
    property_files: dict[str, Any] = field(default_factory=dict)  # PropertyFileName -> parsed JSON


Executor = Callable[[str, dict], StepOutcome]  # (step name, resolved arguments) -> outcome


# --- parameters -----------------------------------------------------------------------------------

def resolve_parameters(definition: dict, values: dict[str, str]) -> dict[str, Any]:
    """The execution's parameter values: defaults, then the passed strings, typed."""
    declared = {p["Name"]: p for p in definition.get("Parameters", [])}
    unknown = sorted(set(values) - set(declared))
    if unknown:
        raise DefinitionError(f"parameters not declared by the pipeline: {', '.join(unknown)}")
    resolved: dict[str, Any] = {}
    for name, parameter in declared.items():
        kind = parameter.get("Type", "String")
        if name in values:
            resolved[name] = _typed(name, kind, values[name])
        elif "DefaultValue" in parameter:
            resolved[name] = _typed(name, kind, parameter["DefaultValue"])
        else:
            raise DefinitionError(f"parameter {name} has no default and no value was passed")
    return resolved


def _typed(name: str, kind: str, value: Any) -> Any:
    try:
        if kind == "Integer":
            return int(value)
        if kind == "Float":
            return float(value)
        if kind == "Boolean":
            if isinstance(value, bool):
                return value
            if str(value).lower() not in ("true", "false"):
                raise ValueError(value)
            return str(value).lower() == "true"
    except (TypeError, ValueError):
        raise DefinitionError(f"parameter {name} ({kind}) cannot take the value {value!r}") from None
    return str(value)


# --- the steps and their dependencies -------------------------------------------------------------

def all_steps(definition: dict) -> Iterator[tuple[dict, str | None, bool | None]]:
    """(step, the condition whose branch holds it or None, True for IfSteps / False for ElseSteps)."""
    pending: list[tuple[dict, str | None, bool | None]] = [(s, None, None) for s in definition.get("Steps", [])]
    while pending:
        step, parent, branch = pending.pop(0)
        yield step, parent, branch
        if step.get("Type") == "Condition":
            arguments = step.get("Arguments", {})
            pending.extend((s, step["Name"], True) for s in arguments.get("IfSteps", []))
            pending.extend((s, step["Name"], False) for s in arguments.get("ElseSteps", []))


def _references(node: Any) -> Iterator[str]:
    """Names of the steps a node's `Get` expressions read from."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Get" and isinstance(value, str) and value.startswith("Steps."):
                yield value.split(".", 2)[1].split("[", 1)[0]
            else:
                yield from _references(value)
    elif isinstance(node, list):
        for item in node:
            yield from _references(item)


def dependencies(step: dict, parent: str | None) -> set[str]:
    arguments = step.get("Arguments", {})
    if step.get("Type") == "Condition":  # its branches are not its inputs
        arguments = {"Conditions": arguments.get("Conditions", [])}
    found = set(step.get("DependsOn") or []) | set(_references(arguments))
    if parent:
        found.add(parent)
    found.discard(step["Name"])
    return found


# --- expressions ----------------------------------------------------------------------------------

_TOKEN = re.compile(r"\.?([A-Za-z0-9_]+)|\[\s*(?:'([^']*)'|\"([^\"]*)\"|(\d+))\s*\]")
_LIST_KEYS = ("OutputName", "InputName", "ChannelName", "Name", "PropertyFileName")


def property_path(path: str) -> list[str | int]:
    tokens: list[str | int] = []
    position = 0
    while position < len(path):
        match = _TOKEN.match(path, position)
        if not match:
            raise DefinitionError(f"cannot read the property path {path!r}")
        name, quoted, double, index = match.groups()
        tokens.append(int(index) if index is not None else (name or quoted or double or ""))
        position = match.end()
    return tokens


def _walk(value: Any, tokens: list[str | int], shown: str) -> Any:
    for token in tokens:
        if isinstance(value, list):
            if isinstance(token, int):
                value = value[token] if token < len(value) else None
            else:
                value = next((item for item in value if isinstance(item, dict)
                              and any(item.get(key) == token for key in _LIST_KEYS)), None)
        elif isinstance(value, dict):
            value = value.get(token)
        else:
            value = None
        if value is None:
            raise DefinitionError(f"{shown} does not exist")
    return value


class Scope:
    """What expressions can read: the parameters, and the properties of steps that ran."""

    def __init__(self, parameters: dict[str, Any]) -> None:
        self.parameters = parameters
        self.properties: dict[str, dict] = {}
        self.property_files: dict[str, dict[str, Any]] = {}

    def get(self, reference: str) -> Any:
        kind, _, rest = reference.partition(".")
        if kind == "Parameters":
            if rest not in self.parameters:
                raise DefinitionError(f"the definition reads the undeclared parameter {rest}")
            return self.parameters[rest]
        if kind == "Steps":
            tokens = property_path(rest)
            step = str(tokens[0])
            if step not in self.properties:
                raise DefinitionError(f"{reference} reads step {step}, which has not run")
            if len(tokens) >= 3 and tokens[1] == "PropertyFiles":
                return {"__property_file__": (step, str(tokens[2]))}
            return _walk(self.properties[step], tokens[1:], reference)
        if kind == "Execution":
            return self.parameters.get(f"__execution_{rest}", "")
        raise DefinitionError(f"cannot resolve {reference!r}")

    def resolve(self, node: Any) -> Any:
        if isinstance(node, dict):
            if set(node) == {"Get"}:
                return self.get(node["Get"])
            if set(node) == {"Std:Join"}:
                join = node["Std:Join"]
                return str(join.get("On", "")).join(_text(self.resolve(v)) for v in join.get("Values", []))
            if set(node) == {"Std:JsonGet"}:
                return self._json_get(node["Std:JsonGet"])
            return {key: self.resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [self.resolve(item) for item in node]
        return node

    def _json_get(self, spec: dict) -> Any:
        reference = self.resolve(spec.get("PropertyFile"))
        if not (isinstance(reference, dict) and "__property_file__" in reference):
            raise DefinitionError("Std:JsonGet needs a PropertyFile reference (Steps.<X>.PropertyFiles.<name>)")
        step, name = reference["__property_file__"]
        files = self.property_files.get(step, {})
        if name not in files:
            raise DefinitionError(f"step {step} has no property file {name}")
        path = str(self.resolve(spec.get("Path", "")))
        return _walk(files[name], property_path(path), f"{path} in property file {name} of step {step}")


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _compare(kind: str, left: Any, right: Any) -> bool:
    if isinstance(left, bool) or isinstance(right, bool):
        left, right = _text(left), _text(right)
    elif isinstance(left, (int, float)) or isinstance(right, (int, float)):
        try:
            left, right = float(left), float(right)
        except (TypeError, ValueError):
            raise DefinitionError(f"cannot compare {left!r} with {right!r}") from None
    operations = {
        "Equals": lambda: left == right,
        "GreaterThan": lambda: left > right,
        "GreaterThanOrEqualTo": lambda: left >= right,
        "LessThan": lambda: left < right,
        "LessThanOrEqualTo": lambda: left <= right,
    }
    return operations[kind]()


def condition_holds(condition: dict, scope: Scope) -> bool:
    kind = condition.get("Type")
    if kind == "Not":
        return not condition_holds(condition["Expression"], scope)
    if kind == "Or":
        return any(condition_holds(c, scope) for c in condition.get("Conditions", []))
    if kind == "In":
        value = scope.resolve(condition.get("QueryValue"))
        return any(_compare("Equals", value, scope.resolve(v)) for v in condition.get("Values", []))
    if kind in ("Equals", "GreaterThan", "GreaterThanOrEqualTo", "LessThan", "LessThanOrEqualTo"):
        return _compare(kind, scope.resolve(condition.get("LeftValue")), scope.resolve(condition.get("RightValue")))
    raise DefinitionError(f"condition type {kind!r} is not supported by the local runtime")


# --- the execution --------------------------------------------------------------------------------

def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Execution:
    """One run of a definition; `steps` is what ListPipelineExecutionSteps would return (oldest first)."""

    status: str = EXECUTING
    failure_reason: str = ""
    steps: list[dict] = field(default_factory=list)
    scope: Scope | None = None


def execute(definition: dict, parameters: dict[str, str], executors: dict[str, Executor], *,
            on_change: Callable[[Execution], None] | None = None,
            should_stop: Callable[[], bool] | None = None,
            execution_values: dict[str, str] | None = None) -> Execution:
    """Run every step of `definition` that SageMaker would run, in dependency order."""
    scope = Scope(resolve_parameters(definition, parameters))
    for key, value in (execution_values or {}).items():
        scope.parameters[f"__execution_{key}"] = value
    run = Execution(scope=scope)
    report = on_change or (lambda execution: None)
    entries = list(all_steps(definition))
    names = [step["Name"] for step, _, _ in entries]
    if len(set(names)) != len(names):
        raise DefinitionError("step names repeat in the definition")
    needs = {step["Name"]: dependencies(step, parent) for step, parent, _ in entries}
    for name, wanted in needs.items():
        missing = sorted(wanted - set(names))
        if missing:
            raise DefinitionError(f"step {name} depends on unknown steps: {', '.join(missing)}")
    placement = {step["Name"]: (parent, branch) for step, parent, branch in entries}
    states: dict[str, str] = {}  # Succeeded | Failed | Stopped | NotRun
    outcomes: dict[str, bool] = {}  # condition -> its outcome
    remaining = [step for step, _, _ in entries]
    while remaining and run.status == EXECUTING:
        ready = next((s for s in remaining if all(d in states for d in needs[s["Name"]])), None)
        if ready is None:
            raise DefinitionError("the steps depend on each other in a cycle: "
                                  + ", ".join(s["Name"] for s in remaining))
        remaining.remove(ready)
        name = ready["Name"]
        parent, branch = placement[name]
        chosen = parent is None or outcomes.get(parent) == branch
        if not chosen or any(states[d] != SUCCEEDED for d in needs[name]):
            states[name] = "NotRun"
            continue
        if should_stop is not None and should_stop():
            run.status, run.failure_reason = STOPPED, "stopped"
            break
        states[name] = _run_step(ready, scope, executors, run, outcomes, report)
        if states[name] in (FAILED, STOPPED):
            break  # SageMaker starts no further step once one has failed or stopped
    if run.status == EXECUTING:
        failed = [s for s in run.steps if s["StepStatus"] == FAILED]
        stopped = [s for s in run.steps if s["StepStatus"] == STOPPED]
        if failed:
            run.status = FAILED
            run.failure_reason = f"Step failure: One or multiple steps failed: {failed[0]['StepName']}"
        elif stopped:
            run.status = STOPPED
        else:
            run.status = SUCCEEDED
    report(run)
    return run


def _run_step(step: dict, scope: Scope, executors: dict[str, Executor], run: Execution,
              outcomes: dict[str, bool], report: Callable[[Execution], None]) -> str:
    name = step["Name"]
    entry: dict[str, Any] = {"StepName": name, "StartTime": _now(), "StepStatus": EXECUTING, "Metadata": {}}
    run.steps.append(entry)
    report(run)
    try:
        outcome = _step_outcome(step, scope, executors, outcomes)
    except DefinitionError as error:
        outcome = StepOutcome(FAILED, failure_reason=str(error))
    entry.update(StepStatus=outcome.status, EndTime=_now(), Metadata=outcome.metadata)
    if outcome.failure_reason:
        entry["FailureReason"] = outcome.failure_reason
    if outcome.status == SUCCEEDED:
        scope.property_files[name] = outcome.property_files
    report(run)
    return outcome.status


def _step_outcome(step: dict, scope: Scope, executors: dict[str, Executor], outcomes: dict[str, bool]
                  ) -> StepOutcome:
    name, kind = step["Name"], step.get("Type")
    if kind == "Condition":
        holds = all(condition_holds(c, scope) for c in step["Arguments"].get("Conditions", []))
        outcomes[name] = holds
        scope.properties[name] = {"Outcome": holds}
        return StepOutcome(SUCCEEDED, metadata={"Condition": {"Outcome": "True" if holds else "False"}})
    if kind == "Fail":
        message = _text(scope.resolve(step.get("Arguments", {}).get("ErrorMessage", "")))
        return StepOutcome(FAILED, failure_reason=message, metadata={"Fail": {"ErrorMessage": message}})
    if kind not in executors:
        raise DefinitionError(f"step {name}: step type {kind!r} is not supported by the local runtime")
    arguments = scope.resolve(step.get("Arguments", {}))
    property_files = step.get("PropertyFiles") or []
    if property_files:
        arguments = {**arguments, "__PropertyFiles__": property_files}
    outcome = executors[kind](name, arguments)
    scope.properties[name] = {**arguments, **outcome.properties}
    return outcome


def definition_from_describe(response: dict) -> dict:
    """The definition JSON of a DescribePipeline response."""
    text = response.get("PipelineDefinition")
    if not text:
        raise DefinitionError("the pipeline has no definition")
    return json.loads(text)
