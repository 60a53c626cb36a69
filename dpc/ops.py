"""The operations of the DPC search space (Chen et al. 2018, Sec. 3.1), as a table of op families.

An op family is one ``OpFamily`` record: its name pattern and sizes (the ops it holds), module
builder, analytic cost, DeepLab JSON form, mutation neighbourhood, drawing style and its part in
the synthetic objective. Every other module reads these fields; none names a family. The three
built-in families give the paper's 81 ops, in the fixed index order every encoding uses:
0 = ``conv1x1``; 1..64 = separable 3x3 convs with rates (rh, rw) in row-major order over RATES;
65..80 = pyramid pooling with grids (gh, gw) in row-major order over GRIDS.

``register_family`` appends a family: its ops take the next indices, so the 81 keep theirs and
stored studies decode the same. ``OPS``, ``NUM_OPS``, ``OP_NAMES``, ``OP_INDEX``, ``OP_BY_NAME``
and ``FAMILIES`` are rebuilt on every change: read them as ``ops.OPS`` (a name imported with
``from dpc.ops import OPS`` keeps the table of its import time).
"""
from __future__ import annotations

import importlib
import itertools
import re
import string
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

RATES: tuple[int, ...] = (1, 3, 6, 9, 12, 15, 18, 21)
GRIDS: tuple[int, ...] = (1, 2, 4, 8)


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


def either(items: Iterable[str]) -> str:
    """``a``, ``a or b``, ``a, b or c``: the alternatives of an error message."""
    items = list(items)
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} or {items[-1]}"


def pooling_kernel(size: int, grid: int) -> int:
    """The reference's pyramid-pooling kernel int((size - 1) / grid + 1), i.e. ceil(size / grid)."""
    return (size - 1) // grid + 1


@dataclass(frozen=True)
class Op:
    """One operation: its family's name and its sizes (e.g. the (rh, rw) atrous rate)."""

    kind: str
    size: tuple[int, ...] = ()

    @property
    def family(self) -> OpFamily:
        family = FAMILY.get(self.kind)
        if family is None:
            raise ValueError(f"unknown op family {brief(self.kind)}; known: {', '.join(FAMILY)}")
        return family

    @property
    def name(self) -> str:
        family = FAMILY.get(self.kind)
        if family is None:  # only for messages about an op outside the space
            return "_".join([str(self.kind), "x".join(map(str, self.size))]) if self.size else str(self.kind)
        return family.op_name(self.size)

    @property
    def index(self) -> int:
        return OP_INDEX[self]

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class OpCost:
    """One op on one image: conv weights (Table 1's params), norm parameters (BN scale and
    shift, the output BN included) and multiply-adds (convolutions only, as torch counts FLOPs)."""

    weights: int
    norm: int
    madds: int


@dataclass(frozen=True)
class SyntheticRole:
    """An op family in ``strategies.synthetic``'s landscape: score ``peak`` (times a Gaussian of
    width ``width`` in size-index steps around a seeded centre drawn uniformly in ``centre`` on
    each of the first two axes, when ``centre`` is set), ``from_features`` when the op reads F,
    ``relay`` x the score of an op reading this one, and a chaining bonus between two ops of the
    family when ``chains`` (cascaded atrous convs)."""

    peak: float = 0.5
    width: float = 1.0
    centre: tuple[float, float] | None = None
    from_features: float = 0.1
    chains: bool = False
    relay: float = 0.0


class _Size:
    def __repr__(self) -> str:
        return "SIZE"


SIZE: Any = _Size()  # marks, in a family's DeepLab JSON form, the key that holds the op's size
ModuleBuilder = Callable[[int, int, tuple[int, ...], int], "nn.Module"]
CostFunction = Callable[[int, int, tuple[int, ...], int, int], OpCost]
_RESOLVED: dict[str, ModuleBuilder] = {}


@dataclass(frozen=True, eq=False)
class OpFamily:
    """One family of ops: everything the rest of the project needs to know about it.

    - ``name``: the family's name (``Op.kind``); ``pattern``: an op's name, ``{0}``, ``{1}`` ...
      standing for its sizes (``"sep3x3_{0}x{1}"``); ``axes``: the allowed values of each size
      (the ops are their product, row-major); ``axis_names`` name the sizes in messages.
    - ``build(in_ch, out_ch, size, rate_multiplier) -> nn.Module``: the op followed by BN + ReLU
      with ``out_ch`` channels, keeping the spatial size; or ``"module:function"``, imported when
      first used (so this table never imports torch).
    - ``cost(in_ch, out_ch, size, height, width) -> OpCost``: the built module's parameters and
      multiply-adds, analytically.
    - ``deeplab``: the op's object in DeepLab's cell JSON, without ``"input"``; ``SIZE`` marks the
      key holding the size (a pair for two axes, else one integer or a list); keys other than
      ``"op"`` tell families sharing an ``"op"`` apart (``kernel`` 1 or 3). ``deeplab_name`` names
      the op in JSON errors (default: the ``"op"`` value).
    - ``nearby(size) -> sizes``: the mutation neighbourhood (default: one axis one step).
    - ``label`` (sizes as in ``pattern``) and ``colour``: the drawing; ``heatmap`` =
      ``(key, title)``: a two-axis family's panel in the choice-frequency plot.
    - ``synthetic``: its part in the synthetic objective's landscape.
    """

    name: str
    pattern: str
    build: ModuleBuilder | str
    cost: CostFunction
    deeplab: Mapping[str, Any]
    axes: tuple[tuple[int, ...], ...] = ()
    axis_names: tuple[str, ...] = ()
    deeplab_name: str = ""
    nearby: Callable[[tuple[int, ...]], Iterable[tuple[int, ...]]] | None = None
    label: str = ""
    colour: str = "#e5e5e5"
    heatmap: tuple[str, str] | None = None
    synthetic: SyntheticRole = field(default_factory=SyntheticRole)

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", str(self.name)):
            raise ValueError(f"op family name {brief(self.name)} must be letters, digits and _ (a letter first)")
        object.__setattr__(self, "axes", tuple(tuple(int(v) for v in axis) for axis in self.axes))
        if not self.axis_names:
            object.__setattr__(self, "axis_names", tuple(f"s{i}" for i in range(len(self.axes))))
        if len(self.axis_names) != len(self.axes) or any(not axis or len(set(axis)) != len(axis) for axis in self.axes):
            raise ValueError(f"op family {self.name}: one name and a non-empty list of distinct values per axis")
        fields = [f for _, f, _, _ in string.Formatter().parse(self.pattern) if f is not None]
        if sorted(set(fields)) != [str(i) for i in range(len(self.axes))]:
            raise ValueError(f"op family {self.name}: pattern {self.pattern!r} must use {{0}}..{{{len(self.axes) - 1}}} once each or more")
        if not self.label:
            object.__setattr__(self, "label", self.pattern)
        if not (callable(self.build) or isinstance(self.build, str) and ":" in self.build) or not callable(self.cost):
            raise ValueError(f"op family {self.name}: build must be a callable or 'module:function', cost a callable")
        sized = [k for k, v in self.deeplab.items() if v is SIZE]
        if not isinstance(self.deeplab.get("op"), str) or len(sized) != (1 if self.axes else 0):
            raise ValueError(f"op family {self.name}: deeplab needs a string 'op' and one SIZE key iff the family has sizes")
        if (self.synthetic.chains or self.heatmap) and len(self.axes) != 2:
            raise ValueError(f"op family {self.name}: only a two-axis family has a heatmap or chains in the synthetic objective")

    # -- the ops and their names --------------------------------------------------------------
    @cached_property
    def ops(self) -> tuple[Op, ...]:
        return tuple(Op(self.name, size) for size in itertools.product(*self.axes))

    @property
    def op_names(self) -> tuple[str, ...]:
        return tuple(self.op_name(op.size) for op in self.ops)  # also before the family is registered

    def op_name(self, size: tuple[int, ...]) -> str:
        return self.pattern.format(*size)

    @property
    def hint(self) -> str:
        """The name pattern for messages: ``sep3x3_RxR``."""
        return self.pattern.format(*(n[0].upper() for n in self.axis_names))

    @cached_property
    def _name_re(self) -> re.Pattern[str]:
        parts, seen = [], set()
        for literal, f, _, _ in string.Formatter().parse(self.pattern):
            parts.append(re.escape(literal))
            if f is not None:
                parts.append(f"(?P=a{f})" if f in seen else f"(?P<a{f}>[0-9]+)")
                seen.add(f)
        return re.compile("".join(parts), re.ASCII)

    def parse(self, name: str) -> tuple[int, ...] | None:
        """The sizes a name of this family's pattern spells (in the space or not), else None."""
        m = self._name_re.fullmatch(name)
        return None if m is None else tuple(int(m.group(f"a{i}")) for i in range(len(self.axes)))

    def sizes_text(self) -> str:
        return str(self.axes[0]) if len(set(self.axes)) == 1 else " x ".join(map(str, self.axes))

    # -- what the other modules call --------------------------------------------------------
    def module(self, in_ch: int, out_ch: int, size: tuple[int, ...], rate_multiplier: int = 1) -> "nn.Module":
        build = self.build
        if isinstance(build, str):
            if build not in _RESOLVED:
                module, _, attr = build.partition(":")
                _RESOLVED[build] = getattr(importlib.import_module(module), attr)
            build = _RESOLVED[build]
        return build(in_ch, out_ch, size, rate_multiplier)

    def neighbours(self, op: Op) -> list[Op]:
        """Ops of this family near ``op`` (never ``op`` itself): ``nearby``, or by default the
        sizes that differ from ``op``'s in one axis by one step."""
        if self.nearby is not None:
            return [o for o in (Op(self.name, tuple(s)) for s in self.nearby(op.size)) if o != op and o in OP_INDEX]
        out = []
        for axis, values in enumerate(self.axes):
            i = values.index(op.size[axis])
            for j in (i - 1, i + 1):
                if 0 <= j < len(values):
                    out.append(Op(self.name, op.size[:axis] + (values[j],) + op.size[axis + 1 :]))
        return out

    def coords(self, op: Op) -> tuple[int, ...]:
        """The index of each of ``op``'s sizes on its axis."""
        return tuple(values.index(v) for values, v in zip(self.axes, op.size))


# -- the built-in families -------------------------------------------------------------------------
def _conv1x1_cost(cin: int, cout: int, size: tuple[int, ...], height: int, width: int) -> OpCost:
    return OpCost(cin * cout, 2 * cout, height * width * cin * cout)


def _separable_cost(cin: int, cout: int, size: tuple[int, ...], height: int, width: int) -> OpCost:
    weights = 9 * cin + cin * cout  # depthwise 3x3, pointwise 1x1
    return OpCost(weights, 2 * cin + 2 * cout, height * width * weights)


def _pool_cost(cin: int, cout: int, size: tuple[int, ...], height: int, width: int) -> OpCost:
    ph = height - pooling_kernel(height, size[0]) + 1  # the 1x1 conv runs on the pooled map
    pw = width - pooling_kernel(width, size[1]) + 1
    return OpCost(cin * cout, 2 * cout, ph * pw * cin * cout)


BUILTIN_FAMILIES: tuple[OpFamily, ...] = (
    OpFamily(
        "conv1x1", "conv1x1", build="dpc.cell:conv1x1", cost=_conv1x1_cost, deeplab={"kernel": 1, "op": "conv"},
        label="conv 1x1", colour="#d9d9d9", synthetic=SyntheticRole(peak=0.4, relay=0.2),
    ),
    OpFamily(
        "sep3x3", "sep3x3_{0}x{1}", build="dpc.cell:separable", cost=_separable_cost,
        deeplab={"kernel": 3, "rate": SIZE, "op": "conv"}, deeplab_name="3x3 conv",
        axes=(RATES, RATES), axis_names=("rh", "rw"), label="sep 3x3\nrate {0}x{1}", colour="#9ecae1",
        heatmap=("rates", "sep 3x3 rate (rh x rw)"),
        synthetic=SyntheticRole(peak=1.0, width=1.5, centre=(1.0, 6.0), from_features=0.3, chains=True),
    ),
    OpFamily(
        "pool", "pool_{0}x{1}", build="dpc.cell:pyramid_pooling", cost=_pool_cost,
        deeplab={"op": "pyramid_pooling", "grid_size": SIZE},
        axes=(GRIDS, GRIDS), axis_names=("gh", "gw"), label="pool\ngrid {0}x{1}", colour="#fdae6b",
        heatmap=("grids", "pool grid (gh x gw)"), synthetic=SyntheticRole(peak=0.6, width=1.0, centre=(0.0, 3.0)),
    ),
)

# -- the registry ----------------------------------------------------------------------------------
FAMILIES: tuple[OpFamily, ...] = ()
FAMILY: dict[str, OpFamily] = {}
OPS: tuple[Op, ...] = ()
NUM_OPS: int = 0
OP_INDEX: dict[Op, int] = {}
OP_BY_NAME: dict[str, Op] = {}
OP_NAMES: tuple[str, ...] = ()


def _rebuild(families: tuple[OpFamily, ...]) -> None:
    global FAMILIES, FAMILY, OPS, NUM_OPS, OP_INDEX, OP_BY_NAME, OP_NAMES
    FAMILIES = families
    FAMILY = {f.name: f for f in families}
    OPS = tuple(op for f in families for op in f.ops)
    NUM_OPS = len(OPS)
    OP_INDEX = {op: i for i, op in enumerate(OPS)}
    OP_NAMES = tuple(op.name for op in OPS)
    OP_BY_NAME = dict(zip(OP_NAMES, OPS))


def _check_new(family: OpFamily) -> None:
    if not isinstance(family, OpFamily):
        raise ValueError(f"register_family takes an OpFamily, got {type(family).__name__}")
    if family.name in FAMILY:
        raise ValueError(f"op family {family.name} is already registered")
    odd = [n for n in family.op_names if not re.fullmatch(r"[A-Za-z0-9_.+-]+", n)]
    if odd:  # a genome string is "F:name 0:name", split on white space and commas
        raise ValueError(f"op family {family.name}: op names are letters, digits and _.+- only, got {brief(odd[0])}")
    clash = sorted(set(family.op_names) & set(OP_BY_NAME))
    if clash:
        raise ValueError(f"op family {family.name}: op names already taken: {', '.join(clash[:5])}")
    op = family.deeplab["op"]
    tags = {k: v for k, v in family.deeplab.items() if k != "op" and v is not SIZE}
    for other in FAMILIES:
        if other.deeplab["op"] != op:
            continue
        other_tags = {k: v for k, v in other.deeplab.items() if k != "op" and v is not SIZE}
        if len(tags) != 1 or tags.keys() != other_tags.keys() or tags == other_tags:
            raise ValueError(f"op family {family.name}: its DeepLab form {{'op': {op!r}, ...}} must differ from "
                             f"{other.name}'s in the value of one shared key, as kernel 1 and 3 of 'conv' do")


def register_family(family: OpFamily) -> OpFamily:
    """Add ``family`` to the space: its ops are appended (indices NUM_OPS, NUM_OPS + 1, ...), so
    every existing op keeps its index, name, JSON and hash."""
    _check_new(family)
    _rebuild(FAMILIES + (family,))
    return family


def unregister_family(name: str) -> None:
    """Remove a family added by ``register_family`` (the built-in three stay); the ops of
    families registered after it move down."""
    if name not in FAMILY or any(f.name == name for f in BUILTIN_FAMILIES):
        raise ValueError(f"{brief(name)} is not a registered op family that can be removed")
    _rebuild(tuple(f for f in FAMILIES if f.name != name))


_rebuild(BUILTIN_FAMILIES)


# -- reading ops -----------------------------------------------------------------------------------
def op_from_name(name: str) -> Op:
    """Parse ``conv1x1``, ``sep3x3_6x21`` or ``pool_2x8``; anything else is a ValueError."""
    if not isinstance(name, str):
        raise ValueError(f"operation name must be a string, got {type(name).__name__}")
    op = OP_BY_NAME.get(name.strip())
    if op is None:
        hint = ""
        for family in FAMILIES:
            if family.axes and family.parse(name.strip()) is not None:
                hint = f" ({family.name} sizes must be in {family.sizes_text()})"
                break
        raise ValueError(f"unknown operation {brief(name)}{hint}; expected {either(f.hint for f in FAMILIES)}")
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
            raise ValueError(f"operation {brief(value)} is not in the {NUM_OPS}-op space")
        return value
    if isinstance(value, str):
        return op_from_name(value)
    return op_from_index(value)
