"""Named reward terms, weighted from the spec.

Progress is potential-based shaping, ``gamma * Phi(s') - Phi(s)`` with ``Phi = -distance /
scale``, which leaves the optimal policy unchanged (Ng, Harada and Russell, 1999). The
other terms are costs (time, proximity inside the safety margin, tissue damage, with elastic tissue
the force above the safe force) and the
success bonus / failure penalty.
"""

from __future__ import annotations

from surgsim.tasks.spec import RewardWeights

TERM_NAMES = ("progress", "time", "proximity", "damage", "success", "failure")


def reward_terms(
    weights: RewardWeights,
    *,
    gamma: float,
    potential_before: float,
    potential_after: float,
    clearance: float,
    safety_margin: float,
    damage_increment: float,
    success: bool,
    failure: bool,
    dense: bool,
    force: tuple[float, float] | None = None,
) -> dict[str, float]:
    """Every term, already weighted; the step reward is their sum.

    ``dense=False`` (the "sparse" reward type) keeps only the success and failure terms.
    ``damage_increment`` is in task units (mm^2 of swept tissue, or mm of bad cut).
    ``force``: (tool force, safe force) in N with elastic tissue, which adds the ``force`` term:
    minus its weight times the force above the safe force, in units of the safe force.
    """
    terms = {
        "progress": 0.0,
        "time": 0.0,
        "proximity": 0.0,
        "damage": 0.0,
        "success": weights.success if success else 0.0,
        "failure": -weights.failure if failure else 0.0,
    }
    if dense:
        terms["progress"] = weights.progress * (gamma * potential_after - potential_before)
        terms["time"] = -weights.time
        if safety_margin > 0.0 and clearance < safety_margin:
            terms["proximity"] = -weights.proximity * (1.0 - max(clearance, 0.0) / safety_margin)
        terms["damage"] = -weights.damage * damage_increment
    if force is not None:
        magnitude, safe = force
        terms["force"] = -weights.force * max(0.0, magnitude - safe) / safe if dense else 0.0
    return terms
