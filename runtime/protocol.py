"""Old import path, kept for handlers written before the regrouping.

New code: `from runtime import MeshError, INVALID_INPUT`.
"""

from runtime.core.protocol import *  # noqa: F403
from runtime.core.protocol import MeshError

__all__ = ["MeshError"]
