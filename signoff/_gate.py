"""What the ``requires_approval`` decorator does around a call, shared by the sync and async clients:
bind the call's arguments to names, build the request, map a reviewer's edit back onto a call, and
describe the outcome for the result report."""

from __future__ import annotations

import inspect
import logging
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from signoff._wire import RISKS, jsonable
from signoff.errors import ApprovalBypassed

log = logging.getLogger("signoff.client")

ContextArg = Mapping[str, Any] | str | Callable[[dict[str, Any]], Mapping[str, Any] | str | None] | None
MAX_DETAIL = 1000
MAX_RETURN = 200  # a returned value is echoed on the Slack card only as a short hint
WITHDRAWN = "the agent stopped waiting for the decision"


def resolve_mode(mode: str | None) -> str:
    value = (mode if mode is not None else os.environ.get("SIGNOFF_MODE") or "on").strip().lower()
    if value not in ("on", "off"):
        raise ValueError(f"SIGNOFF_MODE must be 'on' or 'off', got {value!r}")
    return value


@dataclass(frozen=True)
class GateOptions:
    """The decorator's arguments: how every call of the wrapped function is submitted."""

    risk: str = "medium"
    labels: Sequence[str] | None = None
    timeout_s: int | None = None
    tool: str | None = None
    context: ContextArg = None
    channel: str | None = None
    reviewers: Sequence[str] | None = None
    required_approvals: int | None = None

    def __post_init__(self) -> None:
        if self.risk not in RISKS:
            raise ValueError(f"risk must be one of {', '.join(RISKS)}, got {self.risk!r}")

    def submit_kwargs(self) -> dict[str, Any]:
        return {"risk": self.risk, "labels": self.labels, "timeout_s": self.timeout_s, "channel": self.channel,
                "reviewers": self.reviewers, "required_approvals": self.required_approvals}


class Gate:
    """One decorated function: its signature, the tool name it is submitted as, and the bypass warning."""

    def __init__(self, fn: Callable[..., Any], options: GateOptions) -> None:
        self.fn = fn
        self.options = options
        self.signature = inspect.signature(fn)
        self.tool = options.tool or fn.__name__
        first = next(iter(self.signature.parameters), None)
        # A method's self/cls is not an argument of the action; it is kept for the call, not submitted.
        self.hidden = frozenset({first}) if first in ("self", "cls") else frozenset()
        self._warned = False

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> BoundCall:
        return BoundCall(self, args, kwargs)

    def warn_bypassed(self) -> None:
        if self._warned:
            return
        self._warned = True
        msg = (f"SIGNOFF_MODE=off: {self.tool} runs without human approval; no request is submitted for it "
               f"while this mode is set")
        log.warning(msg)
        warnings.warn(msg, ApprovalBypassed, stacklevel=3)


class BoundCall:
    """A call's arguments by parameter name (defaults applied; ``**kwargs`` entries flattened in)."""

    def __init__(self, gate: Gate, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.gate = gate
        bound = gate.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        self.var_kw = next((p.name for p in gate.signature.parameters.values()
                            if p.kind is inspect.Parameter.VAR_KEYWORD), None)
        self.values: dict[str, Any] = {}
        self._nested_kw = False
        for name, value in bound.arguments.items():
            if name == self.var_kw and not set(value) & set(gate.signature.parameters):
                self.values.update(value)
            else:
                self._nested_kw = self._nested_kw or name == self.var_kw
                self.values[name] = value
        self.submitted: dict[str, Any] = {k: jsonable(v) for k, v in self.values.items()
                                          if k not in gate.hidden}

    def context(self) -> Mapping[str, Any] | str | None:
        ctx = self.gate.options.context
        return ctx(dict(self.values)) if callable(ctx) else ctx

    def edited_call(self, final_args: Mapping[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Positional and keyword arguments for running with a reviewer's ``final_args``.

        A value the reviewer left as submitted keeps its original Python object (a datetime stays a
        datetime); an edited one is passed as the reviewer wrote it; a removed one falls back to its default.
        """
        values = {k: self.values[k] for k in self.gate.hidden}
        for key, value in final_args.items():
            unchanged = key in self.submitted and self.submitted[key] == value
            values[key] = self.values[key] if unchanged else value
        params = self.gate.signature.parameters
        arguments: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for name, param in params.items():
            if param.kind is not inspect.Parameter.VAR_KEYWORD and name in values:
                arguments[name] = values[name]
        for key, value in values.items():
            if key in arguments:
                continue
            if key == self.var_kw and self._nested_kw and isinstance(value, dict):
                extra.update(value)
            else:
                extra[key] = value
        if extra and self.var_kw is None:
            raise TypeError(f"the reviewer's edit of {self.gate.tool} has argument(s) the function does not "
                            f"take: {', '.join(sorted(extra))}")
        if self.var_kw is not None:
            arguments[self.var_kw] = extra
        ordered = {name: arguments[name] for name in params if name in arguments}
        bound = inspect.BoundArguments(self.gate.signature, ordered)
        return bound.args, bound.kwargs


def describe_return(value: Any) -> str:
    return "ok" if value is None else _cut(f"ok; returned {value!r}", MAX_RETURN)


def describe_error(exc: BaseException) -> str:
    return _cut(f"{type(exc).__name__}: {exc}", MAX_DETAIL)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
