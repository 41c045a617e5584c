"""A toy shop: small deterministic agents for the `shop.checkout` pipeline (no network, no I/O).

`reserve` is flaky on purpose: each reservation fails on its first attempt and succeeds on the
second, so the pipeline's `retry` is what makes checkout work.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from runtime import INVALID_INPUT, MeshError

PRICES = {"apple": 0.5, "bread": 2.25, "cheese": 4.0, "milk": 1.2, "tea": 3.5}
STOCK = {"apple": 100, "bread": 10, "cheese": 3, "milk": 20, "tea": 0}

# (request id, sku) -> attempts so far; an entry is dropped once its reservation succeeds.
_attempts: dict[tuple[str, str], int] = {}


def validate(order: dict[str, Any]) -> dict[str, Any]:
    """Check the SKUs and give the order a stable id (same order, same id)."""
    unknown = [item["sku"] for item in order["items"] if item["sku"] not in PRICES]
    if unknown:
        raise MeshError(INVALID_INPUT, f"unknown sku: {', '.join(unknown)}", details={
            "errors": [{"path": f"/items/{i}/sku", "message": f"unknown sku {item['sku']!r}"}
                       for i, item in enumerate(order["items"]) if item["sku"] in unknown]})
    digest = hashlib.sha1(json.dumps(order, sort_keys=True).encode()).hexdigest()[:8]
    return {"order_id": f"ord-{digest}", "customer": order["customer"], "items": order["items"]}


def price(payload: dict[str, Any]) -> dict[str, Any]:
    """The order's total in EUR."""
    total = sum(PRICES[item["sku"]] * item["qty"] for item in payload["items"])
    return {"total": round(total, 2), "currency": "EUR"}


def stock(payload: dict[str, Any]) -> dict[str, Any]:
    """Whether every item is on the shelf, and which are short."""
    short = [item["sku"] for item in payload["items"] if STOCK[item["sku"]] < item["qty"]]
    return {"available": not short, "short": short}


def ship_express(payload: dict[str, Any]) -> dict[str, Any]:
    """Book next-day delivery."""
    return {"carrier": "express", "eta_days": 1}


def reserve(payload: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """Hold one item for the order; fails on the first attempt of every request."""
    key = (ctx.request_id, payload["sku"])
    attempt = _attempts.get(key, 0) + 1
    if attempt < 2:
        _attempts[key] = attempt
        raise RuntimeError(f"warehouse busy, try again ({payload['sku']})")
    _attempts.pop(key, None)
    return {"sku": payload["sku"], "qty": payload["qty"],
            "reservation": f"{payload['order_id']}/{payload['sku']}", "attempts": attempt}
