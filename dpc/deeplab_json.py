"""One op in the reference DeepLab cell JSON (dense_prediction_cell.py), both ways, read
from each op family's ``deeplab`` form in ``dpc.ops``.

Cells may come from untrusted files, so every malformed value becomes a ValueError with a
one-line message (the genome names the branch), never a KeyError or TypeError.
"""
from __future__ import annotations

from typing import Any, Mapping

from . import ops
from .ops import SIZE, Op, OpFamily, as_op, brief, either


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


def _ints(value: Any, what: str, n: int) -> tuple[int, ...]:
    """``n`` sizes: a pair (or one integer for both) for two, one integer for one, else a list."""
    if n == 2:
        return _pair(value, what)
    if n == 1 and isinstance(value, int) and not isinstance(value, bool):
        return (value,)
    if n > 2 and isinstance(value, list) and len(value) == n and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return tuple(value)
    raise ValueError(f"{what} must be {'an integer' if n == 1 else f'a list of {n} integers'}, got {brief(value)}")


def _num(value: int) -> str:
    """An integer for an op name; huge ones (out of the space anyway) shortened, as str() of
    more than 4300 digits raises ValueError."""
    return brief(value, 12)


def _size_key(family: OpFamily) -> str | None:
    return next((k for k, v in family.deeplab.items() if v is SIZE), None)


def _tag(family: OpFamily) -> tuple[str, Any] | None:
    """The key and value that tell this family apart from others with the same ``"op"``."""
    return next(((k, v) for k, v in family.deeplab.items() if k != "op" and v is not SIZE), None)


def op_to_deeplab(op: Op) -> dict[str, Any]:
    """``sep3x3_1x6`` -> ``{"kernel": 3, "rate": [1, 6], "op": "conv"}`` (the caller adds "input")."""
    size = list(op.size) if len(op.size) != 1 else op.size[0]
    return {k: size if v is SIZE else v for k, v in op.family.deeplab.items()}


def _family_of(entry: Mapping[str, Any]) -> OpFamily:
    kind = entry.get("op")
    candidates = [f for f in ops.FAMILIES if f.deeplab["op"] == kind]
    if not candidates:
        known = dict.fromkeys(f.deeplab["op"] for f in ops.FAMILIES)
        raise ValueError(f"unknown op {brief(kind)} (expected {either(map(repr, known))})")
    tagged = [(f, _tag(f)) for f in candidates if _tag(f) is not None]
    if len(candidates) == 1 and not tagged:
        return candidates[0]
    key = tagged[0][1][0]
    values = [str(tag[1]) for _, tag in tagged]
    if key not in entry:
        raise ValueError(f"{kind} needs a '{key}' ({either(values)})")
    value = entry[key]
    if all(isinstance(tag[1], int) for _, tag in tagged):  # kernel 3 == [3, 3], as DeepLab reads it
        value = _pair(value, key)
        for f, tag in tagged:
            if value == (tag[1], tag[1]):
                return f
        raise ValueError(f"{key} {brief(list(value))} not in the space ({either(values)})")
    for f, tag in tagged:
        if value == tag[1]:
            return f
    raise ValueError(f"{key} {brief(value)} not in the space ({either(values)})")


def op_from_deeplab(entry: Mapping[str, Any]) -> Op:
    """The op of one branch object (its "input" is the caller's); ValueError if it is not one."""
    family = _family_of(entry)
    key = _size_key(family)
    if key is None:
        return family.ops[0]
    if key not in entry:
        raise ValueError(f"{family.deeplab_name or family.deeplab['op']} needs a '{key}' [{', '.join(family.axis_names)}]")
    size = _ints(entry[key], key, len(family.axes))
    return as_op(family.op_name(tuple(_num(v) for v in size)))
