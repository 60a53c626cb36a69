"""Draw a cell as a graph of its branches, with plain matplotlib (no graphviz needed).

F (the backbone features) sits at the left; each branch is a box at the column of its
depth in the tree (a branch reading F is at depth 1, one reading such a branch at 2, ...),
labelled with its operation and coloured by op family (both from the family's ``label`` and
``colour`` in ``dpc.ops``); arrows run from each branch's
input; every branch also feeds the concatenation + 1x1 projection at the right. Rows
follow a depth-first walk of the tree, so a branch sits next to the branch it reads.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes

    from dpc.genome import Genome

F_NODE, OUT_NODE = "F", "concat"


@dataclass
class CellDrawing:
    """What was drawn: node positions, edges and labels (for tests and re-use)."""

    positions: dict[str, tuple[float, float]] = field(default_factory=dict)
    edges: list[tuple[str, str]] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)


def op_label(op) -> str:
    """Short, readable op label from its family: 'conv 1x1', 'sep 3x3\\nrate 6x21', 'pool\\ngrid 2x8'."""
    return op.family.label.format(*op.size)


def layout(genome: "Genome") -> CellDrawing:
    """Positions of F, the branches ('b0'..) and the concat node; no drawing."""
    n = len(genome.branches)
    children: dict[int, list[int]] = {-1: []}
    for b, br in enumerate(genome.branches):
        children.setdefault(b, [])
        children[br.input].append(b)
    depth: dict[int, int] = {-1: 0}
    for b, br in enumerate(genome.branches):  # inputs always precede their readers
        depth[b] = depth[br.input] + 1
    rows: list[int] = []

    def visit(node: int) -> None:
        for c in children[node]:
            rows.append(c)
            visit(c)

    visit(-1)
    d = CellDrawing()
    centre = (n - 1) / 2
    max_depth = max(depth[b] for b in range(n))
    d.positions[F_NODE] = (0.0, centre)
    d.labels[F_NODE] = "F"
    for row, b in enumerate(rows):
        d.positions[f"b{b}"] = (float(depth[b]), float(n - 1 - row))
        d.labels[f"b{b}"] = f"b{b}: " + op_label(genome.branches[b].op)
    d.positions[OUT_NODE] = (float(max_depth + 1), centre)
    d.labels[OUT_NODE] = "concat\n+ 1x1"
    for b, br in enumerate(genome.branches):
        d.edges.append((F_NODE if br.input == -1 else f"b{br.input}", f"b{b}"))
    d.edges += [(f"b{b}", OUT_NODE) for b in range(n)]
    return d


def draw_cell(
    genome: "Genome",
    out: str | Path | None = None,
    ax: "Axes | None" = None,
    title: str | None = None,
    formats: tuple[str, ...] = ("png", "svg"),
) -> CellDrawing:
    """Draw ``genome`` on ``ax`` (or a new figure saved to ``out``.{png,svg})."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    d = layout(genome)
    n = len(genome.branches)
    width = d.positions[OUT_NODE][0]
    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(2.0 + 1.9 * width, 1.0 + 0.75 * n))
    box_w, box_h = 0.62, 0.62
    for src, dst in d.edges:
        (x0, y0), (x1, y1) = d.positions[src], d.positions[dst]
        to_out = dst == OUT_NODE
        ax.annotate(
            "", xy=(x1 - (0.22 if to_out else box_w / 2), y1), xytext=(x0 + (0.12 if src == F_NODE else box_w / 2), y0),
            arrowprops=dict(arrowstyle="-|>", color="#bbbbbb" if to_out else "#333333", lw=0.8 if to_out else 1.4,
                            shrinkA=0, shrinkB=0, connectionstyle="arc3,rad=0.0"),
            zorder=1,
        )
    for b, br in enumerate(genome.branches):
        x, y = d.positions[f"b{b}"]
        ax.add_patch(FancyBboxPatch((x - box_w / 2, y - box_h / 2), box_w, box_h, boxstyle="round,pad=0.02",
                                    fc=br.op.family.colour, ec="#333333", lw=1.0, zorder=2))
        ax.text(x, y, d.labels[f"b{b}"], ha="center", va="center", fontsize=8, zorder=3)
    for node, fc in ((F_NODE, "#ffffff"), (OUT_NODE, "#e5f5e0")):
        x, y = d.positions[node]
        half = 0.22 if node == OUT_NODE else 0.12
        ax.add_patch(FancyBboxPatch((x - half, y - 0.4), 2 * half, 0.8, boxstyle="round,pad=0.02",
                                    fc=fc, ec="#333333", lw=1.2, zorder=2))
        ax.text(x, y, d.labels[node], ha="center", va="center",
                fontsize=9 if node == F_NODE else 8, fontweight="bold", zorder=3)
    ax.set_xlim(-0.5, width + 0.5)
    ax.set_ylim(-0.7, n - 0.3)
    ax.set_aspect("auto")
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=9)
    if own:
        fig.tight_layout()
        if out is not None:
            out = Path(out)
            out.parent.mkdir(parents=True, exist_ok=True)
            for fmt in formats:
                path = out.with_suffix(f".{fmt}")
                fig.savefig(path, dpi=150)
                d.files.append(path)
        plt.close(fig)
    return d
