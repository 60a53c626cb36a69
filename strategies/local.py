"""``local``: random search with local perturbation, the search of Chen et al. (2018).

The paper used Google Vizier's random search, "sampling points uniformly at random as well
as sampling some points near the currently best observed architectures". Vizier's ratio and
radius are unpublished, so both are ours and are flags: with probability ``p_random`` a
uniform cell, otherwise one mutation (``dpc.mutate``: one op or one input changed, each
with probability 1/2) of a parent drawn uniformly from the ``top_k`` best completed trials.
"""
from __future__ import annotations

from typing import Any

from optuna.trial import FrozenTrial

from dpc.genome import DEFAULT_BRANCHES
from dpc.mutation import mutate

from .base import GenomeSampler, Proposal, Setting, ranked
from .space import genome_of

DEFAULT_P_RANDOM = 0.5


def default_top_k(budget: int) -> int:
    """10 best trials (a tenth of the budget below 100 evaluations, at least 1)."""
    return max(1, min(10, budget // 10))


class LocalGenomeSampler(GenomeSampler):
    strategy = "local"
    SETTINGS = (
        Setting("p_random", float, "probability of a uniform sample (default 0.5)",
                lambda budget, chosen: DEFAULT_P_RANDOM, low=0.0, high=1.0, flag="--p-random"),
        Setting("top_k", int, "parents come from the k best trials (default min(10, budget//10), >= 1)",
                lambda budget, chosen: default_top_k(budget), low=1, high=1_000_000, flag="--top-k"),
    )

    def __init__(self, seed: int = 0, branches: int = DEFAULT_BRANCHES, p_random: float = DEFAULT_P_RANDOM, top_k: int = 10) -> None:
        super().__init__(seed, branches)
        if not 0.0 <= p_random <= 1.0:
            raise ValueError(f"p_random must be in [0, 1], got {p_random}")
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        self.p_random = float(p_random)
        self.top_k = int(top_k)

    def params(self) -> dict[str, Any]:
        return {"p_random": self.p_random, "top_k": self.top_k}

    def propose(self, completed: list[FrozenTrial], index: int, trial: FrozenTrial) -> Proposal:
        rng = self.choices(index)
        coin = rng.random()  # always drawn, so later draws do not depend on the history
        if not completed or coin < self.p_random:
            return Proposal(self.uniform(index), "random")
        best = ranked(completed)[: self.top_k]
        parent = best[int(rng.integers(len(best)))]
        child = mutate(genome_of(parent.params), rng)
        return Proposal(child, "mutation", parent.number)
