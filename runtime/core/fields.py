"""Field types that pydantic models of mesh.yaml share (kept apart from the plain parsers they
wrap, so that commands which only parse a duration never import pydantic)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator, WithJsonSchema

from runtime.core.durations import DURATION_PATTERN, parse_duration
from runtime.core.sizes import SIZE_PATTERN, parse_size

Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": DURATION_PATTERN},
                {"type": "number", "exclusiveMinimum": 0},
            ],
            "description": "A duration: 250ms, 5s, 2m, 1h, or a number of seconds.",
        }
    ),
]

ByteSize = Annotated[
    int,
    BeforeValidator(parse_size),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": SIZE_PATTERN},
                {"type": "integer", "exclusiveMinimum": 0},
            ],
            "description": "A size: 64KB, 512MB, 1GB (units of 1024), or a number of bytes.",
        }
    ),
]
"""Sizes as people write them in mesh.yaml: `512MB`, `1GB`, or plain bytes."""
