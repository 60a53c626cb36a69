"""``evolution``: regularized (aging) evolution, Real et al. 2019 (AmoebaNet), Algorithm 1.

The population is the ``population`` (P) most recently completed trials of the study, so
the oldest member "dies" as each new one completes, whatever its fitness; the first P draws
are uniform cells. Each later draw runs a tournament of ``tournament`` (S) aspirants picked
uniformly from the population *with replacement* (Algorithm 1 picks a "random element from
population", which "stays in the population"; DEAP's ``selTournament`` does the same), and
the child is one mutation of the winner.

Selection and mutation go through a DEAP toolbox over integer-vector individuals
(``Genome.to_vector``). Both operators take the per-draw numpy generator explicitly instead
of DEAP's global ``random`` state, so a draw is reproducible from (seed, draw index) alone;
the mutation wraps ``dpc.mutate`` (always a different, valid cell) rather than DEAP's
``mutUniformInt``, which can redraw the current value and breaks the input constraints.

Defaults scale Real et al.'s 100/25 (for 20k evaluations; NAS-Bench-101 uses 50/10 and
NAS-Bench-201 10/3) to the budget: P = budget // 5 clipped to [10, 100], S = ceil(P / 4)
(at least 2), so 16 evaluations give 10/3 and >= 500 give Real et al.'s 100/25.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
from deap import base, creator
from optuna.trial import FrozenTrial

from dpc.genome import DEFAULT_BRANCHES, Genome
from dpc.mutation import mutate

from .base import GenomeSampler, Proposal, Setting
from .space import genome_of

if not hasattr(creator, "DpcFitnessMax"):
    creator.create("DpcFitnessMax", base.Fitness, weights=(1.0,))
if not hasattr(creator, "DpcIndividual"):
    creator.create("DpcIndividual", list, fitness=creator.DpcFitnessMax, trial_number=None)


def default_population(budget: int) -> int:
    return int(min(100, max(10, budget // 5)))


def default_tournament(population: int) -> int:
    return int(max(2, math.ceil(population / 4)))


def individual(genome: Genome, value: float | None = None, trial_number: int | None = None):
    ind = creator.DpcIndividual(genome.to_vector())
    if value is not None:
        ind.fitness.values = (float(value),)
    ind.trial_number = trial_number
    return ind


def sel_tournament(
    individuals: Sequence, k: int, tournsize: int, rng: np.random.Generator, aspirants_out: list | None = None
) -> list:
    """DEAP's selTournament with an explicit generator: aspirants drawn with replacement,
    the fittest wins (the first drawn among equals); ``aspirants_out`` collects each
    tournament's aspirants."""
    chosen = []
    for _ in range(k):
        aspirants = [individuals[int(i)] for i in rng.integers(len(individuals), size=tournsize)]
        if aspirants_out is not None:
            aspirants_out.append(aspirants)
        chosen.append(max(aspirants, key=lambda ind: ind.fitness))
    return chosen


def mut_genome(ind, rng: np.random.Generator):
    """One ``dpc.mutate`` step on a vector individual; returns a new individual (a 1-tuple,
    as DEAP mutation operators do)."""
    child = mutate(Genome.from_vector(ind), rng)
    return (individual(child),)


def make_toolbox(tournament: int) -> base.Toolbox:
    toolbox = base.Toolbox()
    toolbox.register("select", sel_tournament, k=1, tournsize=tournament)
    toolbox.register("mutate", mut_genome)
    return toolbox


class EvolutionGenomeSampler(GenomeSampler):
    strategy = "evolution"
    SETTINGS = (
        Setting("population", int, "population P (default budget//5 in [10, 100])",
                lambda budget, chosen: default_population(budget), low=1, high=1_000_000, flag="--population"),
        Setting("tournament", int, "tournament size S (default ceil(P/4), >= 2, <= P)",
                lambda budget, chosen: min(int(chosen.get("population") or default_population(budget)),
                                           default_tournament(int(chosen.get("population") or default_population(budget)))),
                low=1, high=1_000_000, flag="--tournament"),
    )

    def __init__(self, seed: int = 0, branches: int = DEFAULT_BRANCHES, population: int = 10, tournament: int = 3) -> None:
        super().__init__(seed, branches)
        if population < 1:
            raise ValueError(f"population must be >= 1, got {population}")
        if not 1 <= tournament <= population:
            raise ValueError(f"tournament must be in [1, population={population}], got {tournament}")
        self.population = int(population)
        self.tournament = int(tournament)
        self.toolbox = make_toolbox(self.tournament)

    def params(self) -> dict[str, Any]:
        return {"population": self.population, "tournament": self.tournament}

    def current_population(self, completed: list[FrozenTrial]) -> list[FrozenTrial]:
        """The P most recently completed trials, oldest first (ties by trial number)."""
        done = sorted(completed, key=lambda t: (t.datetime_complete, t.number))
        return done[-self.population :]

    def propose(self, completed: list[FrozenTrial], index: int, trial: FrozenTrial) -> Proposal:
        if index < self.population or not completed:
            return Proposal(self.uniform(index), "random")
        rng = self.choices(index)
        pop = [individual(genome_of(t.params), t.value, t.number) for t in self.current_population(completed)]
        seen: list[list] = []
        winner = self.toolbox.select(pop, rng=rng, aspirants_out=seen)[0]
        (child,) = self.toolbox.mutate(winner, rng)
        return Proposal(
            Genome.from_vector(child),
            "mutation",
            winner.trial_number,
            {"tournament": [ind.trial_number for ind in seen[0]]},
        )
