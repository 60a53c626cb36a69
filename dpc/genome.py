"""The genome: B branches, each an input and an operation; immutable and hashable.

Input -1 is the backbone feature map F; input i >= 0 is branch i's output (i < own index),
the convention of the reference DeepLab JSON. One genome type is used by every part of
the project; the encodings below all round-trip exactly.

Every malformed encoding raises GenomeError with a one-line message, never another error:
a genome has 1..MAX_BRANCHES branches (the paper uses 5), and the canonical form is computed
without recursion, so even the longest allowed chain of branches hashes at once.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from . import ops
from .deeplab_json import op_from_deeplab, op_to_deeplab
from .ops import Op, as_op, brief

FEATURES = -1  # input id of the backbone feature map
DEFAULT_BRANCHES = 5
MAX_BRANCHES = 1000  # upper limit on branches per cell, for every encoding and CLI (the paper uses 5)
_INPUT_RE = re.compile(r"-?[0-9]+", re.ASCII)


class GenomeError(ValueError):
    """A genome, or an encoding of one, lies outside the search space."""


@dataclass(frozen=True)
class Branch:
    input: int
    op: Op

    @property
    def op_index(self) -> int:
        return self.op.index


def check_branches(branches: Any) -> int:
    """A number of branches: an integer in 1..MAX_BRANCHES, else GenomeError."""
    n = _check_int(branches, "number of branches")
    if not 1 <= n <= MAX_BRANCHES:
        raise GenomeError(f"number of branches must be in 1..{MAX_BRANCHES}, got {brief(n)}")
    return n


def space_size(branches: int = DEFAULT_BRANCHES) -> int:
    """B! x N^B: branch b has b + 1 possible inputs and N operations (81 built in)."""
    branches = check_branches(branches)
    return math.factorial(branches) * ops.NUM_OPS**branches


def _check_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if hasattr(value, "__index__") and not isinstance(value, bool):
            try:
                return int(value.__index__())
            except Exception:
                pass
        raise GenomeError(f"{what} must be an integer, got {brief(value)}")
    return int(value)


@dataclass(frozen=True)
class Genome:
    branches: tuple[Branch, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.branches, tuple):
            if isinstance(self.branches, (str, bytes, Mapping)) or not isinstance(self.branches, Iterable):
                raise GenomeError(f"branches must be a sequence of Branch, got {type(self.branches).__name__}")
            object.__setattr__(self, "branches", tuple(self.branches))
        if len(self.branches) < 1:
            raise GenomeError("a genome needs at least one branch")
        if len(self.branches) > MAX_BRANCHES:
            raise GenomeError(f"a genome has at most {MAX_BRANCHES} branches, got {len(self.branches)}")
        for b, branch in enumerate(self.branches):
            if not isinstance(branch, Branch):
                raise GenomeError(f"branch {b}: expected a Branch, got {type(branch).__name__}")
            inp = _check_int(branch.input, f"branch {b}: input")
            if not FEATURES <= inp < b:
                raise GenomeError(
                    f"branch {b}: input {brief(inp)} out of range (must be -1 for the features or an earlier branch 0..{b - 1})"
                    if b
                    else f"branch 0: input {brief(inp)} out of range (branch 0 can only read the features, -1)"
                )
            try:
                as_op(branch.op)
            except ValueError as e:
                raise GenomeError(f"branch {b}: {e}") from None

    # -- construction -------------------------------------------------------------------
    @classmethod
    def of(cls, *pairs: tuple[int, Op | int | str]) -> Genome:
        """``Genome.of((-1, "conv1x1"), (0, "sep3x3_6x6"))``."""
        if len(pairs) > MAX_BRANCHES:
            raise GenomeError(f"a genome has at most {MAX_BRANCHES} branches, got {len(pairs)}")
        out = []
        for b, pair in enumerate(pairs):
            try:
                inp, op = pair
                out.append(Branch(_check_int(inp, f"branch {b}: input"), as_op(op)))
            except GenomeError:
                raise
            except (ValueError, TypeError) as e:
                raise GenomeError(f"branch {b}: {_one_line(e)}") from None
        return cls(tuple(out))

    @property
    def num_branches(self) -> int:
        return len(self.branches)

    def __len__(self) -> int:
        return len(self.branches)

    def __iter__(self):
        return iter(self.branches)

    # -- integer vector [in_0, op_0, in_1, op_1, ...] --------------------------------------
    def to_vector(self) -> list[int]:
        return [v for br in self.branches for v in (br.input, br.op.index)]

    @classmethod
    def from_vector(cls, vector: Sequence[int]) -> Genome:
        if isinstance(vector, (str, bytes, Mapping)):
            raise GenomeError(f"vector must be a sequence of integers, got {type(vector).__name__}")
        try:
            values = list(vector)
        except TypeError:
            raise GenomeError(f"vector must be a sequence of integers, got {brief(vector)}") from None
        if not values or len(values) % 2:
            raise GenomeError(f"vector must have an even, non-zero length [in_0, op_0, ...], got {len(values)}")
        return cls.of(*zip(values[0::2], values[1::2]))

    # -- Optuna-style params {"b0_input": -1, "b0_op": "conv1x1", ...} ----------------------
    def to_params(self) -> dict[str, int | str]:
        params: dict[str, int | str] = {}
        for b, br in enumerate(self.branches):
            params[f"b{b}_input"] = br.input
            params[f"b{b}_op"] = br.op.name
        return params

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Genome:
        if not isinstance(params, Mapping):
            raise GenomeError(f"params must be a mapping, got {type(params).__name__}")
        n = 0
        while f"b{n}_op" in params and n <= MAX_BRANCHES:
            n += 1
        if n == 0:
            raise GenomeError("params hold no branch (expected keys b0_input, b0_op, ...)")
        pairs = []
        for b in range(n):
            if f"b{b}_input" not in params:
                raise GenomeError(f"branch {b}: params lack b{b}_input")
            pairs.append((params[f"b{b}_input"], params[f"b{b}_op"]))
        return cls.of(*pairs)

    # -- one-line human string "F:sep3x3_1x6 0:sep3x3_18x15 ..." --------------------------
    def __str__(self) -> str:
        return " ".join(f"{'F' if br.input == FEATURES else br.input}:{br.op.name}" for br in self.branches)

    def __repr__(self) -> str:
        return f"Genome('{self}')"

    @classmethod
    def parse(cls, text: str) -> Genome:
        if not isinstance(text, str):
            raise GenomeError(f"genome string must be str, got {type(text).__name__}")
        tokens = text.replace(",", " ").split()
        if not tokens:
            raise GenomeError("empty genome string; expected e.g. 'F:conv1x1 0:sep3x3_6x6'")
        if len(tokens) > MAX_BRANCHES:
            raise GenomeError(f"a genome has at most {MAX_BRANCHES} branches, got {len(tokens)}")
        pairs = []
        for b, token in enumerate(tokens):
            inp, sep, op = token.partition(":")
            if not sep:
                raise GenomeError(f"branch {b}: token {brief(token)} is not INPUT:OP (e.g. F:conv1x1)")
            if inp.upper() == "F":
                pairs.append((FEATURES, op))
            elif _INPUT_RE.fullmatch(inp):
                if len(inp) > 12:  # far out of range; int() of thousands of digits would raise ValueError
                    allowed = f"F, -1 or an earlier branch 0..{b - 1}" if b else "branch 0 can only read the features, F or -1"
                    raise GenomeError(f"branch {b}: input {brief(inp, 20)} out of range ({allowed})")
                pairs.append((int(inp), op))
            else:
                raise GenomeError(f"branch {b}: input {brief(inp)} must be F, -1 or an earlier branch's number (ASCII digits)")
        return cls.of(*pairs)

    # -- DeepLab JSON ----------------------------------------------------------------------
    def to_deeplab(self) -> list[dict[str, Any]]:
        return [{**op_to_deeplab(br.op), "input": br.input} for br in self.branches]

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_deeplab(), **kwargs)

    @classmethod
    def from_deeplab(cls, cell: Any) -> Genome:
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
                pairs.append((inp, op_from_deeplab(entry)))
            except ValueError as e:
                raise GenomeError(f"branch {b}: {e}") from None
        return cls.of(*pairs)

    @classmethod
    def from_json(cls, text: str | bytes) -> Genome:
        try:
            cell = json.loads(text)
        except RecursionError:
            raise GenomeError("malformed cell JSON: nested too deeply (a cell is a list of flat objects)") from None
        except (ValueError, TypeError) as e:  # JSONDecodeError, UnicodeDecodeError, numbers of > 4300 digits
            if "int_max_str_digits" in str(e):
                raise GenomeError("malformed cell JSON: an integer of more than 4300 digits") from None
            raise GenomeError(f"malformed cell JSON: {_one_line(e)}") from None
        return cls.from_deeplab(cell)

    # -- canonical form and hash -------------------------------------------------------------
    def _children(self) -> dict[int, list[int]]:
        children: dict[int, list[int]] = {FEATURES: []}
        for b, br in enumerate(self.branches):
            children.setdefault(b, [])
            children[br.input].append(b)
        return children

    def _encodings(self) -> tuple[dict[int, list[int]], dict[int, str]]:
        """Children of every node, and every node's AHU encoding ``label(sorted child codes)``.

        A branch only reads an earlier branch, so visiting branches from the last to the
        first encodes every child before its parent: no recursion, whatever the depth.
        """
        children = self._children()
        code: dict[int, str] = {}
        for node in range(len(self.branches) - 1, FEATURES - 1, -1):
            label = "F" if node == FEATURES else self.branches[node].op.name
            code[node] = f"{label}({','.join(sorted(code[c] for c in children[node]))})"
        return children, code

    def canonical_string(self) -> str:
        """AHU encoding of the rooted, op-labelled tree hanging from F.

        Each branch reads exactly one input, so a cell is a tree rooted at F; since the
        concat is followed by a 1x1 projection, branch order does not change the function
        class, and two cells are equivalent iff their labelled trees are isomorphic.
        """
        return self._encodings()[1][FEATURES]

    def canonical_hash(self) -> str:
        return hashlib.sha256(self.canonical_string().encode()).hexdigest()[:16]

    def canonical(self) -> Genome:
        """The representative of this genome's equivalence class (pre-order, sorted children)."""
        children, code = self._encodings()
        new_index: dict[int, int] = {FEATURES: FEATURES}
        order: list[Branch] = []
        # pre-order walk, children in order of their codes, with an explicit stack
        stack = [(c, FEATURES) for c in reversed(sorted(children[FEATURES], key=code.__getitem__))]
        while stack:
            node, parent = stack.pop()
            new_index[node] = len(order)
            order.append(Branch(new_index[parent], self.branches[node].op))
            stack.extend((c, node) for c in reversed(sorted(children[node], key=code.__getitem__)))
        return Genome(tuple(order))


def _one_line(e: BaseException, limit: int = 200) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def genomes_equivalent(a: Genome, b: Genome) -> bool:
    return a.canonical_string() == b.canonical_string()


def parse_genome(spec: str | Iterable[int] | Mapping[str, Any] | list[dict[str, Any]]) -> Genome:
    """Best-effort dispatch from any encoding (string, JSON text, vector, params, DeepLab list)."""
    if isinstance(spec, Genome):
        return spec
    if isinstance(spec, str):
        s = spec.strip()
        return Genome.from_json(s) if s.startswith("[") else Genome.parse(s)
    if isinstance(spec, Mapping):
        return Genome.from_params(spec)
    if isinstance(spec, bytes):
        return Genome.from_json(spec)
    try:
        spec = list(spec)
    except TypeError:
        raise GenomeError(f"cannot read a genome from {type(spec).__name__} (expected a string, JSON, vector or params)") from None
    if spec and isinstance(spec[0], Mapping):
        return Genome.from_deeplab(spec)
    return Genome.from_vector(spec)

