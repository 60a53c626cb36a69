"""Re-train a study's incumbent with fresh seeds and score it on the test split.

A search picks its incumbent by validation mIOU from one training run per cell: the maximum of
noisy numbers, so an optimistic one. The number to report is the incumbent re-trained with seeds
the search never used and scored on the test split it never saw (NAS-Bench-201 reports val and
test; Lindauer & Hutter's checklist asks for several seeds and a final evaluation the search did
not see). The re-trainings are the companion study ``{study}-incumbent``, a queue run by the
search's own worker loop (``strategies.cells``): resumable, and shared by several workers.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import TrialState

from dpc.genome import Genome

from .cells import Cell, evaluate_cells
from .objectives import Objective
from .optuna_adapter import storage_of
from .settings import SearchSettings
from .study import budget_status

FRESH_SEED_BASE = 1_000_000  # re-training seeds are FRESH_SEED_BASE + i; searches train with the config's seed
DEFAULT_REEVAL_SEEDS = 3


def companion_name(study_name: str) -> str:
    return f"{study_name}-incumbent"


@dataclass
class IncumbentReport:
    study: str
    trial: int
    genome: str
    val: float  # the validation mIOU that selected it (one seed, seen by the search)
    seeds: list[int] = field(default_factory=list)
    test: list[float] = field(default_factory=list)  # test mIOU of each fresh-seed re-training
    val_retrained: list[float] = field(default_factory=list)  # their val mIOU (the selection's optimism)

    @property
    def test_mean(self) -> float | None:
        return statistics.fmean(self.test) if self.test else None

    @property
    def test_std(self) -> float | None:
        return statistics.stdev(self.test) if len(self.test) > 1 else (0.0 if self.test else None)

    def line(self, metric: str = "mIOU") -> str:
        if not self.test:
            return f"test {metric}  n/a (no re-training completed)"
        return (f"test {metric}  {self.test_mean:.4f} ± {self.test_std:.4f}  (re-trained with {len(self.test)} fresh "
                f"seeds, scored on the test split the search never saw; their val {metric} "
                f"{statistics.fmean(self.val_retrained):.4f})")

    def to_dict(self) -> dict[str, Any]:
        return {"study": self.study, "trial": self.trial, "genome": self.genome, "val": self.val, "seeds": self.seeds,
                "test": self.test, "val_retrained": self.val_retrained, "test_mean": self.test_mean,
                "test_std": self.test_std}


def reevaluate_incumbent(
    study: optuna.Study,
    settings: SearchSettings,
    objective: Objective | str | None = None,
    k: int = DEFAULT_REEVAL_SEEDS,
    progress: bool = False,
) -> IncumbentReport | None:
    """Re-train the study's best trial (by val) ``k`` times with fresh seeds; None if it has none."""
    if not isinstance(k, int) or isinstance(k, bool) or not 0 <= k <= 1000:
        raise ValueError(f"re-evaluation seeds must be an integer in [0, 1000], got {k!r}")
    best = budget_status(study).best_trial
    if best is None or k == 0:
        return None
    genome = Genome.from_params(best.params)
    origin = {"kind": "incumbent", "source_study": study.study_name, "source_trial": best.number,
              "source_val": best.value}
    cells = [Cell(genome, origin, seed=FRESH_SEED_BASE + i) for i in range(k)]
    name = companion_name(study.study_name)
    storage = settings.storage if settings.storage is not None else storage_of(study)
    workers = min(settings.workers, k) if isinstance(storage, str) else 1
    objective = settings.objective if workers > 1 or objective is None else objective  # workers rebuild it by name
    companion = evaluate_cells(
        storage, name, cells, objective, config=settings.config, eval_seed=settings.eval_seed, workers=workers,
        study_attrs={"kind": "incumbent", "source_study": study.study_name, "objective": settings.objective,
                     "config": settings.config, "dataset": settings.dataset},
        progress=progress, dataset=settings.dataset, cache_dir=settings.cache_dir,
    )
    return incumbent_report(companion, study.study_name, best, genome)


def incumbent_report(companion: optuna.Study, study_name: str, best, genome: Genome) -> IncumbentReport:
    report = IncumbentReport(study_name, best.number, str(genome), float(best.value))
    key = genome.canonical_hash()
    for t in sorted(companion.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)),
                    key=lambda t: t.user_attrs.get("eval_seed", 0)):
        test = t.user_attrs.get("test_miou")
        if t.user_attrs.get("genome_hash") == key and test is not None and math.isfinite(float(test)):
            report.seeds.append(int(t.user_attrs.get("eval_seed", -1)))
            report.test.append(float(test))
            report.val_retrained.append(float(t.value))
    return report
