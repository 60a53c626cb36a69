"""Named reference cells, so that searches and plots can compare against known designs."""
from __future__ import annotations

from .genome import Genome

# DeepLab's dense_prediction_cell_branch5_top1_cityscapes.json (the paper's best cell).
TOP1_CITYSCAPES_JSON = (
    '[{"kernel": 3, "rate": [1, 6], "op": "conv", "input": -1}, '
    '{"kernel": 3, "rate": [18, 15], "op": "conv", "input": 0}, '
    '{"kernel": 3, "rate": [6, 3], "op": "conv", "input": 1}, '
    '{"kernel": 3, "rate": [1, 1], "op": "conv", "input": 0}, '
    '{"kernel": 3, "rate": [6, 21], "op": "conv", "input": 0}]'
)

ZOO: dict[str, Genome] = {
    # ASPP of DeepLabv3 in this space: its 3x3 atrous convs become separable (as in
    # DeepLabv3+ with Xception), image pooling is the 1x1 pyramid-pooling grid.
    "aspp": Genome.parse("F:conv1x1 F:sep3x3_6x6 F:sep3x3_12x12 F:sep3x3_18x18 F:pool_1x1"),
    "top1_cityscapes": Genome.from_json(TOP1_CITYSCAPES_JSON),
    # A deliberately weak cell: no spatial context at all.
    "weak": Genome.parse("F:conv1x1 F:conv1x1 F:conv1x1 F:conv1x1 F:conv1x1"),
}
ZOO_ALIASES = {"top1": "top1_cityscapes", "dpc": "top1_cityscapes"}


def zoo_cell(name: str) -> Genome:
    key = ZOO_ALIASES.get(name, name)
    if key not in ZOO:
        raise ValueError(f"unknown zoo cell {name!r}; known: {', '.join(sorted(ZOO) + sorted(ZOO_ALIASES))}")
    return ZOO[key]


def load_cell(spec: str) -> Genome:
    """A CLI's CELL argument: a zoo name, a path to a DeepLab JSON file, JSON text or a genome string."""
    from pathlib import Path

    from .genome import parse_genome

    spec = spec.strip()
    if ZOO_ALIASES.get(spec, spec) in ZOO:
        return zoo_cell(spec)
    if spec.endswith(".json") or ("/" in spec and ":" not in spec):
        path = Path(spec)
        if not path.is_file():
            raise ValueError(f"cell file {spec!r} not found")
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(f"cannot read cell file {spec!r}: {e}") from None
        return parse_genome(text)
    return parse_genome(spec)
