"""Handlers of the triggers example: orders in, events out."""

from runtime import INVALID_INPUT, Context, MeshError


def check(order: dict) -> dict:
    if not order["items"]:
        raise MeshError(INVALID_INPUT, f"order {order['id']} has no items")
    return {**order, "total": sum(item["price"] for item in order["items"])}


async def confirm(payload: dict, ctx: Context) -> dict:
    ctx.logger.info("confirming order %s (%.2f)", payload["order"], payload["total"])
    await ctx.emit("mail.sent", {"order": payload["order"]})
    return {"sent": True}
