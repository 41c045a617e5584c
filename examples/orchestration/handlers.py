"""A help desk's agents: three classifiers that vote, three specialists, a ticket counter.

Every handler is deterministic and touches nothing but the mesh: classifiers by word lists,
specialists by canned answers, and the shared state for ticket numbers.
"""

from __future__ import annotations

import re
from typing import Any

from runtime import Context

BILLING = {"invoice", "charged", "refund", "bill", "price"}
TECH = {"error", "crash", "login", "password", "install", "bug"}
PAYMENT = {"payment", "card", "charged", "invoice", "paid"}
DEVICE = {"app", "wifi", "error", "slow", "screen", "login"}


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


def _label(words: set[str], billing: set[str], tech: set[str]) -> str:
    if words & billing:
        return "billing"
    return "tech" if words & tech else "other"


async def by_keywords(payload: dict[str, Any]) -> dict[str, Any]:
    return {"label": _label(_words(payload["text"]), BILLING, TECH)}


async def by_lexicon(payload: dict[str, Any]) -> dict[str, Any]:
    return {"label": _label(_words(payload["text"]), PAYMENT, DEVICE)}


async def by_default(payload: dict[str, Any]) -> dict[str, Any]:
    # A cautious voter: it never picks a specialist, so the other two decide.
    return {"label": "other"}


async def next_ticket(payload: dict[str, Any], ctx: Context) -> dict[str, Any]:
    # A compare-and-set update: concurrent requests, in any process, never share a number.
    return {"number": await ctx.state.update("desk.tickets", lambda n: (n or 0) + 1)}


ANSWERS = {
    "billing": "a double charge is refunded within 3 days",
    "tech": "signing out and in again fixes most login errors",
    "other": "a person from the desk will write back today",
}


async def answer(payload: dict[str, Any], ctx: Context) -> dict[str, Any]:
    # The pipeline's set_state step wrote this customer's record just before calling us.
    record = await ctx.state.get(f"desk.customers.{payload['customer']}") or {}
    topic = ctx.config["topic"]
    return {"answer": f"ticket {record.get('ticket', '?')}: {ANSWERS[topic]}", "by": ctx.agent}
