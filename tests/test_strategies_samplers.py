"""Each strategy: valid genomes, reproducible per seed, state from the study's history only,
and the history used as specified (local: top-k parents; evolution: last P completed)."""
from __future__ import annotations

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from dpc.genome import Genome
from dpc.mutation import neighbours
from dpc.ops import NUM_OPS, OP_NAMES
from strategies import STRATEGIES, make_sampler, search, search_space
from strategies.evolution import EvolutionGenomeSampler, default_population, default_tournament
from strategies.local import default_top_k
from strategies.random_sampler import RandomGenomeSampler
from strategies.registry import strategy_params
from strategies.synthetic import StructuredObjective

optuna.logging.set_verbosity(optuna.logging.WARNING)
OBJ = StructuredObjective(seed=0)


def run(strategy: str, budget: int, seed: int = 0, **params) -> list[optuna.trial.FrozenTrial]:
    return search(OBJ, strategy, budget, seed, strategy_params=params).study.get_trials(deepcopy=False)


def genomes(trials) -> list[str]:
    return [str(Genome.from_params(t.params)) for t in trials]


@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_valid_reproducible_and_seed_dependent(strategy):
    a, b, c = run(strategy, 25, seed=3), run(strategy, 25, seed=3), run(strategy, 25, seed=4)
    space = search_space()
    for t in a:
        assert t.state == TrialState.COMPLETE
        assert set(t.params) == set(space)
        for name, dist in space.items():
            assert t.params[name] in dist.choices
        g = Genome.from_params(t.params)  # raises if invalid
        assert t.user_attrs["genome"] == str(g) and t.user_attrs["genome_hash"] == g.canonical_hash()
        assert Genome.from_json(t.user_attrs["json"]) == g
        assert t.user_attrs["origin"] in ("random", "mutation", "tpe")
    assert genomes(a) == genomes(b)
    assert genomes(a) != genomes(c)
    assert [t.value for t in a] == [t.value for t in b]


@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_state_comes_from_the_study_not_memory(strategy):
    """A fresh sampler instance halfway (a restarted worker) continues exactly as before."""
    space = search_space()
    params = strategy_params(strategy, 30, {"population": 8} if strategy == "evolution" else {})

    def ask_tell(study, n):
        for _ in range(n):
            t = study.ask(space)
            study.tell(t, OBJ(Genome.from_params(t.params)))

    one = optuna.create_study(direction="maximize", sampler=STRATEGIES[strategy].sampler(seed=1, **params))
    ask_tell(one, 30)
    two = optuna.create_study(direction="maximize", sampler=STRATEGIES[strategy].sampler(seed=1, **params))
    ask_tell(two, 15)
    two.sampler = STRATEGIES[strategy].sampler(seed=1, **params)  # "restart"
    ask_tell(two, 15)
    assert genomes(one.trials) == genomes(two.trials)


def test_random_is_uniform():
    sampler = RandomGenomeSampler(seed=0)
    n = 4000
    ops = np.zeros((5, NUM_OPS))
    inputs = [np.zeros(b + 1) for b in range(5)]
    for i in range(n):
        for b, br in enumerate(sampler.uniform(i).branches):
            ops[b, br.op.index] += 1
            inputs[b][br.input + 1] += 1
    from scipy.stats import chisquare

    for b in range(5):
        assert chisquare(ops[b]).pvalue > 1e-3
        if b:
            assert chisquare(inputs[b]).pvalue > 1e-3
    assert ops.min() > 0  # every op drawn on every branch


def test_local_mutates_one_of_the_top_k():
    k = 3
    trials = run("local", 40, seed=2, p_random=0.0, top_k=k)
    assert trials[0].user_attrs["origin"] == "random"  # no history yet
    for t in trials[1:]:
        assert t.user_attrs["origin"] == "mutation"
        before = [s for s in trials if s.number < t.number]
        top = sorted(before, key=lambda s: (-s.value, s.number))[:k]
        assert t.user_attrs["parent"] in [s.number for s in top]
        parent = Genome.from_params(trials[t.user_attrs["parent"]].params)
        assert Genome.from_params(t.params) in set(neighbours(parent))


def test_local_mixes_uniform_and_mutations_and_shares_uniform_draws_with_random():
    local = run("local", 40, seed=5, p_random=0.5, top_k=5)
    origins = [t.user_attrs["origin"] for t in local]
    assert 8 <= origins.count("random") <= 32 and "mutation" in origins
    rand = run("random", 40, seed=5)
    # Common random numbers: a uniform draw at index i is the random strategy's draw i.
    for t in local:
        if t.user_attrs["origin"] == "random":
            assert genomes([t]) == genomes([rand[t.number]])


def test_evolution_first_p_random_then_tournament_over_last_p_completed():
    P, S = 6, 3
    trials = run("evolution", 40, seed=1, population=P, tournament=S)
    rand = run("random", P, seed=1)
    assert genomes(trials[:P]) == genomes(rand)
    assert all(t.user_attrs["origin"] == "random" for t in trials[:P])
    for t in trials[P:]:
        assert t.user_attrs["origin"] == "mutation"
        done = sorted((s for s in trials if s.number < t.number), key=lambda s: (s.datetime_complete, s.number))
        population = {s.number for s in done[-P:]}
        aspirants = t.user_attrs["tournament"]
        assert len(aspirants) == S and set(aspirants) <= population  # aging: only the last P
        best = max(trials[a].value for a in aspirants)
        parent = trials[t.user_attrs["parent"]]
        assert parent.number in aspirants and parent.value == best
        assert Genome.from_params(t.params) in set(neighbours(Genome.from_params(parent.params)))
    # With replacement (Real et al.'s Algorithm 1, DEAP's selTournament): repeats do occur.
    assert any(len(set(t.user_attrs["tournament"])) < S for t in trials[P:])


def test_evolution_uses_a_deap_toolbox():
    sampler = EvolutionGenomeSampler(seed=0, population=10, tournament=3)
    assert hasattr(sampler.toolbox, "select") and hasattr(sampler.toolbox, "mutate")
    with pytest.raises(ValueError, match="tournament"):
        EvolutionGenomeSampler(population=5, tournament=6)


def test_tpe_random_startup_then_model():
    trials = run("tpe", 16, seed=0, n_startup_trials=5)
    origins = [t.user_attrs["origin"] for t in trials]
    assert origins[:5] == ["random"] * 5 and origins[5:] == ["tpe"] * 11


def test_tpe_constant_liar_changes_nothing_for_a_lone_worker():
    a = run("tpe", 20, seed=7, n_startup_trials=5)
    b = search(OBJ, "tpe", 20, 7, strategy_params={"n_startup_trials": 5, "constant_liar": False}).study.trials
    assert genomes(a) == genomes(b)


def test_defaults_scale_with_budget():
    assert strategy_params("evolution", 16) == {"population": 10, "tournament": 3}  # NAS-Bench-201's 10/3
    assert strategy_params("evolution", 20000) == {"population": 100, "tournament": 25}  # Real et al.
    assert strategy_params("evolution", 250) == {"population": 50, "tournament": 13}
    assert strategy_params("evolution", 100, {"population": 40}) == {"population": 40, "tournament": 10}
    assert default_population(16) == 10 and default_tournament(10) == 3
    assert strategy_params("local", 16) == {"p_random": 0.5, "top_k": 1}
    assert strategy_params("local", 1000)["top_k"] == 10 == default_top_k(100)
    assert strategy_params("tpe", 16)["n_startup_trials"] == 10
    with pytest.raises(ValueError, match="takes no setting population"):
        strategy_params("random", 10, {"population": 5})
    with pytest.raises(ValueError, match="unknown strategy"):
        make_sampler("annealing")


def test_make_sampler_is_an_optuna_sampler_for_user_objectives():
    """Users can drive the samplers with plain Optuna and their own suggest calls."""
    sampler = make_sampler("evolution", seed=0, budget=30)
    study = optuna.create_study(direction="maximize", sampler=sampler)

    def objective(trial):
        params = {f"b{b}_input": trial.suggest_categorical(f"b{b}_input", list(range(-1, b))) for b in range(5)}
        params.update({f"b{b}_op": trial.suggest_categorical(f"b{b}_op", list(OP_NAMES)) for b in range(5)})
        return OBJ(Genome.from_params(params))

    study.optimize(objective, n_trials=30)
    assert len(study.trials) == 30 and study.trials[-1].user_attrs["origin"] == "mutation"
