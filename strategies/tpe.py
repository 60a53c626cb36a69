"""``tpe``: Optuna's Tree-structured Parzen Estimator over the genome's categorical params.

``TPESampler(multivariate=True, group=True, constant_liar=True)``; its random startup
(``n_startup_trials``, Optuna's default 10) and its candidate draws are reseeded before each
trial from (seed, draw index), so like the other strategies it keeps no state in memory
that a restart or a second worker would miss. The constant liar only acts when other trials
are RUNNING (several workers or machines): it then counts them as bad observations, so
parallel workers do not all propose the same cell; a lone worker samples exactly as without it.
"""
from __future__ import annotations

import warnings
from typing import Any

from optuna.exceptions import ExperimentalWarning
from optuna.samplers import TPESampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from dpc.genome import DEFAULT_BRANCHES

from .base import FIXED_PARAMS_KEY, TPE_STREAM, UNIFORM_STREAM, Setting, check_seed, draw_index, int_seed_for
from .optuna_adapter import reseed_tpe, set_trial_user_attr

DEFAULT_STARTUP = 10  # Optuna's default n_startup_trials
DEFAULT_EI_CANDIDATES = 24  # Optuna's default n_ei_candidates


class TPEGenomeSampler(TPESampler):
    strategy = "tpe"
    SETTINGS = (
        Setting("n_startup_trials", int, "random trials before TPE (default 10, Optuna's)",
                lambda budget, chosen: DEFAULT_STARTUP, low=0, high=1_000_000, flag="--tpe-startup"),
        Setting("n_ei_candidates", int, "candidates scored per draw (Optuna's default 24)",
                lambda budget, chosen: DEFAULT_EI_CANDIDATES, low=1, high=100_000),
        Setting("constant_liar", bool, "count running trials as bad (parallel workers)",
                lambda budget, chosen: True),
    )

    def __init__(
        self,
        seed: int = 0,
        branches: int = DEFAULT_BRANCHES,
        n_startup_trials: int = DEFAULT_STARTUP,
        n_ei_candidates: int = DEFAULT_EI_CANDIDATES,
        constant_liar: bool = True,
    ) -> None:
        if n_startup_trials < 0 or n_ei_candidates < 1:
            raise ValueError(f"need n_startup_trials >= 0 and n_ei_candidates >= 1, got {n_startup_trials}, {n_ei_candidates}")
        self.seed = check_seed(seed)
        self.branches = int(branches)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            super().__init__(
                seed=self.seed,
                multivariate=True,
                group=True,
                constant_liar=constant_liar,
                n_startup_trials=n_startup_trials,
                n_ei_candidates=n_ei_candidates,
            )

    def params(self) -> dict[str, Any]:
        return {
            "n_startup_trials": self._n_startup_trials,
            "n_ei_candidates": self._n_ei_candidates,
            "multivariate": True,
            "group": True,
            "constant_liar": self._constant_liar,
        }

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        index = draw_index(study, trial, self.branches)
        reseed_tpe(self, int_seed_for(self.seed, index, TPE_STREAM), int_seed_for(self.seed, index, UNIFORM_STREAM))
        super().before_trial(study, trial)
        if FIXED_PARAMS_KEY not in trial.system_attrs:
            n_done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))
            origin = "random" if n_done < self._n_startup_trials else "tpe"
            set_trial_user_attr(study, trial, "origin", origin)
            set_trial_user_attr(study, trial, "parent", None)
