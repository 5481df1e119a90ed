"""OpenTelemetry traces of executions: a span per run of an execution and per task attempt.

    from opentelemetry.sdk.trace import TracerProvider
    import flux.tracing

    flux.tracing.instrument(TracerProvider(...))   # every run of this process from now on

Spans are made from the records a run appends (a record listener, SPEC.md 4.11), so replayed
records make none: a resumed run's span covers what that run did. The names and attributes
follow OpenTelemetry's semantic conventions where one applies (`exception` events, `error.type`,
`code.*`) and use the `flux.` namespace for the rest:

    workflow <name>     one run of an execution; flux.execution_id, flux.workflow, flux.resumed;
                        events: flux.retry (an attempt failed and the next waits until
                        flux.retry_at), flux.sleep and flux.timer_fired (a durable timer),
                        flux.pause; status ERROR when the workflow failed
    task <name>         one attempt of a task, a child of its run's span; flux.call_id,
                        flux.attempt, code.file.path and code.line.number of the call;
                        an `exception` event and status ERROR when the attempt failed

A sub-workflow's run is a child of the span of the task that called it. Span times are the
records' own times. Needs the `otel` extra (`pip install 'flux-replay[otel]'`); only
`opentelemetry-api` is imported here, the SDK and exporters are the application's choice.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from flux._engine.listeners import RunInfo, add_listener, remove_listener

__all__ = ["TracingListener", "instrument", "uninstrument"]

_installed: TracingListener | None = None


def instrument(tracer_provider: Any = None) -> TracingListener:
    """Traces every run of this process from now on, with spans from `tracer_provider` (the
    global one when None). Calling it again replaces the previous instrumentation."""
    global _installed
    uninstrument()
    _installed = TracingListener(tracer_provider)
    add_listener(_installed)
    return _installed


def uninstrument() -> None:
    """Stops tracing runs (spans already started end when their runs do not: they are ended now)."""
    global _installed
    if _installed is not None:
        remove_listener(_installed)
        _installed.close()
        _installed = None


def _ns(record: dict[str, Any]) -> int | None:
    at = record.get("at")
    if not isinstance(at, str):
        return None
    try:
        return int(dt.datetime.fromisoformat(at).timestamp() * 1_000_000) * 1000
    except ValueError:
        return None


def _iso(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat(timespec="microseconds")


def _error(record: dict[str, Any]) -> tuple[str, str]:
    """(type, message) of a recorded error."""
    error = record.get("error")
    if not isinstance(error, dict):
        return "Error", ""
    ref = error.get("$error")
    name = ref.rpartition(":")[2] if isinstance(ref, str) else "Error"
    message = error.get("msg")
    return name, message if isinstance(message, str) else ""


class TracingListener:
    """The record listener that turns records into spans (see the module's docstring)."""

    def __init__(self, tracer_provider: Any = None) -> None:
        try:
            from opentelemetry import trace
        except ImportError:
            raise ImportError(
                "flux.tracing needs OpenTelemetry, which is not installed; "
                "install it with: pip install 'flux-replay[otel]'"
            ) from None
        from importlib.metadata import PackageNotFoundError, version

        try:
            number: str | None = version("flux-replay")
        except PackageNotFoundError:
            number = None
        self._trace = trace
        self._tracer = trace.get_tracer("flux", number, tracer_provider=tracer_provider)
        self._runs: dict[str, Any] = {}  # execution id -> its run's span
        self._calls: dict[tuple[str, str], Any] = {}  # (execution id, call id) -> the open attempt's span
        self._names: dict[tuple[str, str], tuple[str, str | None]] = {}  # (execution id, call id) -> (name, src)

    def recorded(self, run: RunInfo, record: dict[str, Any]) -> None:
        kind = record.get("kind")
        at = _ns(record)
        eid = run.execution_id
        if kind in ("workflow_started", "workflow_resumed"):
            self._start_run(run, at)
            return
        span = self._runs.get(eid)
        if span is None:
            return
        call_id = record.get("call_id")
        key = (eid, call_id) if isinstance(call_id, str) else None
        if kind == "task_started" and key is not None:
            src = record.get("src")
            self._names[key] = (str(record.get("name")), src if isinstance(src, str) else None)
            self._start_attempt(span, key, 0, at)
        elif kind == "retry_started" and key is not None and key in self._names:
            attempt = record.get("attempt")
            self._start_attempt(span, key, attempt if isinstance(attempt, int) else 0, at)
        elif kind == "attempt_failed" and key is not None:
            self._end_attempt(key, at, record)
            retry_at = record.get("retry_at")
            if isinstance(retry_at, (int, float)):
                when = _iso(retry_at)
                span.add_event(
                    "flux.retry",
                    {"flux.call_id": key[1], "flux.task": self._names.get(key, ("?", None))[0], "flux.retry_at": when},
                    timestamp=at,
                )
        elif kind in ("task_completed", "task_failed", "task_cancelled") and key is not None:
            self._end_attempt(key, at, record if kind == "task_failed" else None)
            self._names.pop(key, None)
        elif kind == "timer_started" and key is not None:
            wake_at = record.get("wake_at")
            attributes: dict[str, Any] = {"flux.call_id": key[1]}
            if isinstance(wake_at, (int, float)):
                attributes["flux.wake_at"] = _iso(wake_at)
            span.add_event("flux.sleep", attributes, timestamp=at)
        elif kind == "timer_fired" and key is not None:
            span.add_event("flux.timer_fired", {"flux.call_id": key[1]}, timestamp=at)
        elif kind == "workflow_paused":
            span.add_event("flux.pause", {"flux.call_id": str(call_id), "flux.pause": str(record.get("name"))}, at)
        elif kind == "workflow_failed":
            kind_name, message = _error(record)
            span.set_attribute("error.type", kind_name)
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, f"{kind_name}: {message}"))
        elif kind == "workflow_cancelled":
            span.set_attribute("flux.cancelled", True)

    def ended(self, run: RunInfo, status: str, error: BaseException | None) -> None:
        span = self._runs.pop(run.execution_id, None)
        for key in [k for k in self._calls if k[0] == run.execution_id]:
            self._calls.pop(key).end()  # a run stopped by engine trouble leaves attempts open
        for key in [k for k in self._names if k[0] == run.execution_id]:
            del self._names[key]
        if span is None:
            return
        span.set_attribute("flux.status", status)
        if error is not None:
            span.set_attribute("error.type", type(error).__name__)
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        span.end()

    def close(self) -> None:
        """Ends every span still open."""
        for span in [*self._calls.values(), *self._runs.values()]:
            span.end()
        self._calls.clear()
        self._runs.clear()
        self._names.clear()

    def _start_run(self, run: RunInfo, at: int | None) -> None:
        context = None
        if run.parent is not None:
            caller = self._calls.get((str(run.parent.get("execution_id")), str(run.parent.get("call_id"))))
            if caller is not None:
                context = self._trace.set_span_in_context(caller)
        self._runs[run.execution_id] = self._tracer.start_span(
            f"workflow {run.workflow}",
            context=context,
            start_time=at,
            attributes={
                "flux.execution_id": run.execution_id,
                "flux.workflow": run.workflow,
                "flux.resumed": run.resumed,
            },
        )

    def _start_attempt(self, run_span: Any, key: tuple[str, str], attempt: int, at: int | None) -> None:
        name, src = self._names[key]
        attributes: dict[str, Any] = {"flux.call_id": key[1], "flux.task": name, "flux.attempt": attempt}
        if src is not None:
            path, _, line = src.rpartition(":")
            if path and line.isdigit():
                attributes["code.file.path"] = path
                attributes["code.line.number"] = int(line)
        previous = self._calls.pop(key, None)
        if previous is not None:
            previous.end(end_time=at)
        self._calls[key] = self._tracer.start_span(
            f"task {name}", context=self._trace.set_span_in_context(run_span), start_time=at, attributes=attributes
        )

    def _end_attempt(self, key: tuple[str, str], at: int | None, failed: dict[str, Any] | None) -> None:
        span = self._calls.pop(key, None)
        if span is None:
            return
        if failed is not None:
            kind_name, message = _error(failed)
            span.add_event("exception", {"exception.type": kind_name, "exception.message": message}, timestamp=at)
            span.set_attribute("error.type", kind_name)
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, f"{kind_name}: {message}"))
        span.end(end_time=at)
