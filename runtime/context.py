"""Old import path, kept for handlers written before the regrouping.

New code: `from runtime import Context`.
"""

from runtime.core.context import Caller, Context

__all__ = ["Caller", "Context"]
