"""The 81 operations of the DPC search space (Chen et al. 2018, Sec. 3.1).

Index order is fixed and part of every encoding: 0 = ``conv1x1``; 1..64 = separable
3x3 convs with rates (rh, rw) in row-major order over RATES; 65..80 = pyramid pooling
with grids (gh, gw) in row-major order over GRIDS.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

RATES: tuple[int, ...] = (1, 3, 6, 9, 12, 15, 18, 21)
GRIDS: tuple[int, ...] = (1, 2, 4, 8)

OpKind = Literal["conv1x1", "sep3x3", "pool"]


@dataclass(frozen=True)
class Op:
    """One operation; ``size`` is the (rh, rw) atrous rate or the (gh, gw) pooling grid."""

    kind: OpKind
    size: tuple[int, int] = (1, 1)

    @property
    def name(self) -> str:
        if self.kind == "conv1x1":
            return "conv1x1"
        return f"{self.kind}_{self.size[0]}x{self.size[1]}"

    @property
    def family(self) -> OpKind:
        return self.kind

    @property
    def index(self) -> int:
        return OP_INDEX[self]

    def __str__(self) -> str:
        return self.name


def _all_ops() -> tuple[Op, ...]:
    ops = [Op("conv1x1")]
    ops += [Op("sep3x3", (rh, rw)) for rh in RATES for rw in RATES]
    ops += [Op("pool", (gh, gw)) for gh in GRIDS for gw in GRIDS]
    return tuple(ops)


OPS: tuple[Op, ...] = _all_ops()
NUM_OPS: int = len(OPS)
OP_INDEX: dict[Op, int] = {op: i for i, op in enumerate(OPS)}
OP_BY_NAME: dict[str, Op] = {op.name: op for op in OPS}
OP_NAMES: tuple[str, ...] = tuple(op.name for op in OPS)
FAMILIES: tuple[OpKind, ...] = ("conv1x1", "sep3x3", "pool")

_NAME_RE = re.compile(r"^(sep3x3|pool)_([0-9]+)x([0-9]+)$")


def printable(text: str) -> str:
    """``text`` on one line: control characters and line separators (which ``splitlines``
    also splits on, e.g. \\x1e) written as escapes."""
    return "".join(c if c.isprintable() or c == " " else c.encode("unicode_escape").decode("ascii") for c in text)


def brief(value: object, limit: int = 60) -> str:
    """``repr(value)`` for an error message: one line, at most ``limit`` characters, and safe
    for values whose repr itself fails (integers of thousands of digits, deeply nested lists)."""
    try:
        text = repr(value)
    except (ValueError, RecursionError, MemoryError):
        if isinstance(value, int):
            return f"<an integer of {value.bit_length()} bits>"
        return f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def op_from_name(name: str) -> Op:
    """Parse ``conv1x1``, ``sep3x3_6x21`` or ``pool_2x8``; anything else is a ValueError."""
    if not isinstance(name, str):
        raise ValueError(f"operation name must be a string, got {type(name).__name__}")
    op = OP_BY_NAME.get(name.strip())
    if op is None:
        m = _NAME_RE.match(name.strip())
        hint = ""
        if m:
            allowed = RATES if m.group(1) == "sep3x3" else GRIDS
            hint = f" ({m.group(1)} sizes must be in {allowed})"
        raise ValueError(f"unknown operation {brief(name)}{hint}; expected conv1x1, sep3x3_RxR or pool_GxG")
    return op


def op_from_index(index: int) -> Op:
    if isinstance(index, bool) or not isinstance(index, (int,)) and not hasattr(index, "__index__"):
        raise ValueError(f"operation index must be an integer, got {brief(index)}")
    i = int(index)
    if not 0 <= i < NUM_OPS:
        raise ValueError(f"operation index {brief(i)} out of range 0..{NUM_OPS - 1}")
    return OPS[i]


def as_op(value: Op | int | str) -> Op:
    """Accept an Op, an index or a name: the three ways ops appear in encodings."""
    if isinstance(value, Op):
        if value not in OP_INDEX:
            raise ValueError(f"operation {brief(value)} is not in the 81-op space")
        return value
    if isinstance(value, str):
        return op_from_name(value)
    return op_from_index(value)


def pooling_kernel(size: int, grid: int) -> int:
    """The reference's pyramid-pooling kernel int((size - 1) / grid + 1), i.e. ceil(size / grid)."""
    return (size - 1) // grid + 1
