"""profile_echo.py's readings: the serving process, its CPU, and the profilers' output.

`part_of` sorts a py-spy sample into a part of the request path. A sample is a stack,
outermost frame first, each frame `function (file:line)`. It goes to the first rule, in
PARTS order, that matches one of its frames: so a frame deep in the stack (say, the header
loop of nats-py's publish) wins over the frame that called it.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from _harness import Child, descendants

# (part, pattern on one frame); the first part whose pattern matches any frame wins.
RULES: list[tuple[str, re.Pattern[str]]] = [
    ("socket writes (flusher: one write per loop turn)", re.compile(r"writelines|\.write \(")),
    ("nats-py header encoding (publish)", re.compile(r"_send_publish \(.*client\.py:10(1[1-9]|2[0-6])\)")),
    ("nats-py publish, the rest", re.compile(r"_send_publish|Client\.publish|hpub_cmd|pub_cmd|"
                                               r"_send_command|_flush_pending|headerblock\.py|"
                                               r"Msg\.respond")),
    ("nats-py reading, parsing, headers in", re.compile(r"_read_loop|Parser\.parse|_process_msg|"
                                                        r"_process_headers|_build_message")),
    ("nats-py subscription queue", re.compile(r"_wait_for_msgs \(.*subscription\.py:30[5-9]|"
                                              r"Queue\.(get|task_done|put_nowait)")),
    ("JSON", re.compile(r"exact_json|json/|orjson|detect_encoding")),
    ("schema validation", re.compile(r"codec\.py:(2[3-9]|3[0-8])\)|schemadefaults")),
    ("stats", re.compile(r"stats\.py|perf_counter")),
    ("deadlines", re.compile(r"deadlines\.py")),
    ("admission", re.compile(r"admission\.py")),
    ("task creation, current task", re.compile(r"_start_task|create_task|current_task|"
                                               r"_weakrefset|tasks\.py")),
    ("the handler (echo) and its call", re.compile(r"handlers\.py|invoke_async|Service\._run ")),
    ("request path (service.py: checks, ids, answer)", re.compile(r"service\.py|text\.py|"
                                                                   r"requestids|echo \(.*raw_resp")),
    ("event loop (uvloop or asyncio, C or Python)", re.compile(r"Runner\.run|_run_once|select|"
                                                              r"Handle\._run|base_events")),
]
PARTS = [part for part, _ in RULES]


def part_of(stack: list[str]) -> str:
    """The part one sampled stack belongs to ("other" when no rule matches)."""
    for part, pattern in RULES:
        if any(pattern.search(frame) for frame in stack):
            return part
    return "other"


def parts(raw_file: Path) -> Counter[str]:
    """Samples per part, from py-spy's raw (collapsed stack) output."""
    counts: Counter[str] = Counter()
    for line in raw_file.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            counts[part_of(stack.split(";"))] += int(count)
    return counts


def instructions(out: Path, pid: int | None) -> int:
    total = 0
    for dump in out.glob(f"callgrind.out.{pid}*"):
        for line in dump.read_text(errors="replace").splitlines():
            if line.startswith(("totals:", "summary:")):
                total += int(line.split()[1])
                break
    return total


def cpu_ns(pid: int | None) -> int:
    """CPU time of `pid`, its children and all their threads, in ns (Linux schedstat: finer
    than the clock ticks of /proc/PID/stat). `up` is a supervisor and its worker."""
    total = 0
    for process in [pid, *descendants(pid)] if pid is not None else []:
        for stat in Path(f"/proc/{process}/task").glob("*/schedstat"):
            try:
                total += int(stat.read_text().split()[0])
            except (OSError, IndexError, ValueError):
                continue  # a thread that ended meanwhile
    return total


def serving_pid(child: Child) -> int:
    """The process that answers: `up`'s worker (its newest descendant), else the child."""
    assert child.pid is not None
    found = descendants(child.pid)
    return max(found) if found else child.pid
