"""Search strategies over the DPC genome space, all Optuna samplers sharing one trial schema.

``search(objective, strategy=..., budget=..., seed=...)`` runs or resumes a study;
``python -m strategies.run --strategy random`` is the same from the command line.
Strategies: ``random``, ``local`` (Vizier-style, Chen et al. 2018), ``evolution``
(regularized evolution, Real et al. 2019) and ``tpe`` (Optuna's TPE).
"""
from .api import SearchResult, default_study_name, search
from .registry import STRATEGIES, Strategy, get_strategy, make_sampler, strategy_params
from .space import genome_of, search_space
from .study import BudgetStatus, SearchError
from .synthetic import StructuredObjective, make_synthetic

__all__ = [
    "BudgetStatus", "STRATEGIES", "SearchError", "SearchResult", "Strategy", "StructuredObjective",
    "default_study_name", "genome_of", "get_strategy", "make_sampler", "make_synthetic", "search",
    "search_space", "strategy_params",
]
