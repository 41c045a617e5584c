"""Placeholder."""
PARTS: list[str] = []


def part_of(stack: list[str]) -> str:
    return "other"
