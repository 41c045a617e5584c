"""Runs as text for a terminal: the `runs ls` table, the `runs show` timeline, a `watch` line.

Everything shown that came from the journal goes through `escape`: another client may have
written control characters there.
"""

from __future__ import annotations

import time
from typing import Any

from runtime.core.text import escape
from runtime.runs.summary import short_of, timeline


def table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(no runs in the journal)"
    lines = [("RUN", "PIPELINE", "STATUS", "STARTED", "DURATION", "STEPS", "NOW / ERROR")]
    for r in rows:
        error = r.get("error") or {}
        now = r.get("step") or (f"{error.get('code')}: {error.get('message')}" if error else "")
        lines.append((r["run"], escape(str(r.get("pipeline") or "?")), r["status"],
                      clock(r.get("started")), duration_text(r.get("duration_ms")),
                      str(r.get("steps_done", 0)), escape(now)[:60]))
    widths = [max(len(line[i]) for line in lines) for i in range(6)]
    return "\n".join(("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=False))
                      + "  " + line[6]).rstrip() for line in lines)


def timeline_text(run: dict[str, Any]) -> str:
    head = f"run {run['run']}  {escape(str(run.get('pipeline') or '?'))}  {run['status']}"
    if run.get("duration_ms") is not None:
        head += f" in {duration_text(run['duration_ms'])}"
    lines = [head, f"started {clock(run.get('started'))}"
             + (f"  trace {run['trace_id']}" if run.get("trace_id") else "")]
    if run.get("input") is not None:
        lines.append("input  " + short_of({"event": "", "output": run["input"]}))
    lines += ["  " + line_text(line) for line in timeline(run)]
    if "output" in run:
        lines.append("output " + short_of({"event": "", "output": run["output"]}))
    if run.get("unreadable"):
        lines.append(f"({run['unreadable']} unreadable message(s) on mesh.run.{run['run']}.>:"
                     " not events of this run)")
    return "\n".join(lines)


def line_text(line: dict[str, Any]) -> str:
    offset = line.get("offset_ms")
    step = line.get("step") or ""
    if line.get("attempt") is not None and line["attempt"] > 1:
        step += f" (attempt {line['attempt']})"
    took = duration_text(line.get("duration_ms")) if line.get("duration_ms") is not None else ""
    text = (f"{'+' + duration_text(offset) if offset is not None else '':>10}  "
            f"{line['event']:<14} {escape(step):<24} {took:>9}  {escape(line.get('short', ''))}")
    return text.rstrip()


def verdict(run: dict[str, Any]) -> str:
    error = run.get("error")
    if error:
        return escape(f"run {run['run']} {run['status']}: {error.get('code')}: "
                      f"{error.get('message')}")
    return f"run {run['run']} {run['status']}"


def duration_text(ms: float | None) -> str:
    if ms is None:
        return ""
    if ms < 1000:
        return f"{ms:.1f}ms"
    if ms < 120_000:
        return f"{ms / 1000:.2f}s"
    return f"{ms / 60000:.1f}m"


def clock(at: float | None) -> str:
    if at is None:
        return "?"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))
