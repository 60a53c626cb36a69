"""Why an evaluation ended without a score; searches store ``reason`` on the failed trial."""
from __future__ import annotations


class EvaluationError(RuntimeError):
    """An evaluation failed; the evaluator, its cache and the process stay usable."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class NaNLossError(EvaluationError):
    pass


class GPUOutOfMemoryError(EvaluationError):
    pass
