"""Log lines a person (or a log shipper) can use: UTC time, level, agent, message.

Text:  `2026-05-01T12:00:00.123Z warning: [nlp.summarizer] request 42 failed: ...`
JSON:  `{"time": "...", "level": "warning", "agent": "nlp.summarizer", "message": "..."}`
An agent's lines come from the logger `mesh-runtime.agent.<name>`, so its name is known.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import UTC, datetime

from runtime.core.text import escape

AGENT_LOGGER = "mesh-runtime.agent."
LEVELS = ("debug", "info", "warning", "error")


def log_options(parser: argparse.ArgumentParser) -> None:
    """`up`'s --log-format (--log-level and -v are global options of every command)."""
    parser.add_argument("--log-format", choices=("text", "json"), default="text",
                        help="text lines (default) or one JSON object per line")


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _agent(record: logging.LogRecord) -> str | None:
    name = record.name
    return name[len(AGENT_LOGGER):] if name.startswith(AGENT_LOGGER) else None


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        agent = _agent(record)
        where = f"[{agent}] " if agent else ""
        # Escaped: a value from the wire or a handler's message can never start a new line.
        message = escape(record.getMessage())
        text = f"{_timestamp(record)} {record.levelname.lower()}: {where}{message}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {"time": _timestamp(record),
                                   "level": record.levelname.lower()}
        agent = _agent(record)
        if agent:
            line["agent"] = agent
        line["message"] = record.getMessage()
        trace_id = getattr(record, "trace_id", None)  # a failed request's (serve/failures.py)
        if trace_id:
            line["trace_id"] = trace_id
        if record.exc_info:
            line["traceback"] = self.formatException(record.exc_info)
        return json.dumps(line)


def setup_logging(verbose: bool = False, level: str | None = None, form: str = "text") -> None:
    """Log to stderr in `form`; `level` beats `verbose` (debug), which beats info."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if form == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    chosen = level or ("debug" if verbose else "info")
    root.setLevel(getattr(logging, chosen.upper()))
    logging.getLogger("nats").setLevel(logging.CRITICAL)  # we log connection changes ourselves
