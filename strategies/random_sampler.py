"""``random``: uniform over the B! x 81^B cells, the baseline every strategy must beat."""
from __future__ import annotations

from optuna.trial import FrozenTrial

from .base import GenomeSampler, Proposal


class RandomGenomeSampler(GenomeSampler):
    """Each branch's input uniform over its b + 1 choices, its op uniform over the 81."""

    strategy = "random"
    SETTINGS = ()

    def propose(self, completed: list[FrozenTrial], index: int, trial: FrozenTrial) -> Proposal:
        return Proposal(self.uniform(index), "random")
