"""How an episode ended, in the one labelling evaluations, demos and recorded sessions share.

Its own module, so that the session recorder can use it without importing the env (and with it
the tasks and the planner).
"""

from __future__ import annotations

from typing import Any, Mapping


def episode_outcome(info: Mapping[str, Any]) -> str:
    """How an episode ended, from its last ``info``: ``success``, the ``failure_reason``, or
    ``time_limit`` (the one labelling of outcomes in evaluations, demos and recorded sessions)."""
    if info.get("is_success"):
        return "success"
    if info.get("failure_reason"):
        return str(info["failure_reason"])
    return "time_limit"
