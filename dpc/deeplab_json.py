"""Reading the reference DeepLab cell JSON (dense_prediction_cell.py) defensively.

Cells may come from untrusted files, so every malformed value becomes a GenomeError
that names the branch, never a KeyError or TypeError.
"""
from __future__ import annotations

from typing import Any

from .ops import Op, as_op, brief


def _pair(value: Any, what: str) -> tuple[int, int]:
    if isinstance(value, bool):
        raise ValueError(f"{what} must be an integer or a pair of integers, got {brief(value)}")
    if isinstance(value, int):
        return value, value
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        return int(value[0]), int(value[1])
    raise ValueError(f"{what} must be an integer or a pair of integers, got {brief(value)}")


def _num(value: int) -> str:
    """An integer for an op name; huge ones (out of the space anyway) shortened, as str() of
    more than 4300 digits raises ValueError."""
    return brief(value, 12)


def _branch_op(entry: dict[str, Any]) -> Op:
    kind = entry.get("op")
    if kind == "conv":
        if "kernel" not in entry:
            raise ValueError("conv needs a 'kernel' (1 or 3)")
        kernel = _pair(entry["kernel"], "kernel")
        if kernel == (1, 1):
            return as_op("conv1x1")
        if kernel == (3, 3):
            if "rate" not in entry:
                raise ValueError("3x3 conv needs a 'rate' [rh, rw]")
            rh, rw = _pair(entry["rate"], "rate")
            return as_op(f"sep3x3_{_num(rh)}x{_num(rw)}")
        raise ValueError(f"kernel {brief(list(kernel))} not in the space (1 or 3)")
    if kind == "pyramid_pooling":
        if "grid_size" not in entry:
            raise ValueError("pyramid_pooling needs a 'grid_size' [gh, gw]")
        gh, gw = _pair(entry["grid_size"], "grid_size")
        return as_op(f"pool_{_num(gh)}x{_num(gw)}")
    raise ValueError(f"unknown op {brief(kind)} (expected 'conv' or 'pyramid_pooling')")


def branches_from_deeplab(cell: Any) -> list[tuple[int, Op]]:
    from .genome import MAX_BRANCHES, GenomeError

    if not isinstance(cell, list) or not cell:
        raise GenomeError(f"a DeepLab cell is a non-empty JSON list of branches, got {type(cell).__name__}")
    if len(cell) > MAX_BRANCHES:
        raise GenomeError(f"a genome has at most {MAX_BRANCHES} branches, got {len(cell)}")
    pairs = []
    for b, entry in enumerate(cell):
        if not isinstance(entry, dict):
            raise GenomeError(f"branch {b}: expected a JSON object, got {type(entry).__name__}")
        if "input" not in entry:
            raise GenomeError(f"branch {b}: missing 'input'")
        inp = entry["input"]
        if isinstance(inp, bool) or not isinstance(inp, int):
            raise GenomeError(f"branch {b}: input must be an integer, got {brief(inp)}")
        try:
            pairs.append((inp, _branch_op(entry)))
        except ValueError as e:
            raise GenomeError(f"branch {b}: {e}") from None
    return pairs
