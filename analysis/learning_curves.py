"""Learning curves of one study's trials: where a pruner stopped training, and what the others went on to.

``python -m analysis.learning_curves --storage runs/x.journal --study NAME --out docs/figures/NAME``
draws every trial's reported val mIOU against its training step (complete trials solid, pruned ones
dashed and ending in a cross) and prints a table: trial, cell, state, last step, seconds (its own
start to end, or the replayed objective's ``simulated_seconds``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Optional

import optuna
from optuna.trial import TrialState

from strategies.optuna_adapter import trial_seconds

from .load import AnalysisError, read_storage
from .plots import plt, save


def rows(study: optuna.Study) -> list[dict[str, Any]]:
    out = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
        steps = sorted(t.intermediate_values)
        out.append({"trial": t.number, "genome": t.user_attrs.get("genome"), "state": t.state.name,
                    "last_step": steps[-1] if steps else None, "value": t.value, "seconds": trial_seconds(t),
                    "curve": [[s, t.intermediate_values[s]] for s in steps]})
    return out


def plot(data: list[dict[str, Any]], out: str | Path, title: str) -> list[Path]:
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    for r in data:
        if not r["curve"]:
            continue
        x, y = zip(*r["curve"])
        pruned = r["state"] == "PRUNED"
        line, = ax.plot(x, y, ls="--" if pruned else "-", lw=1.2, marker="o", ms=2.5, alpha=0.85,
                        label=f"#{r['trial']} {'pruned' if pruned else 'complete'}")
        if pruned:
            ax.plot(x[-1], y[-1], marker="x", ms=8, color=line.get_color())
    ax.set_xlabel("training step")
    ax.set_ylabel("val mIOU")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if len(data) <= 12:
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    return save(fig, out)


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m analysis.learning_curves", description=__doc__.split("\n\n")[0])
    p.add_argument("--storage", required=True, help="journal file or database URL")
    p.add_argument("--study", required=True, help="study name")
    p.add_argument("--out", default=None, help="figure path without suffix (PNG and SVG); default: table only")
    args = p.parse_args(argv)
    try:
        study = optuna.load_study(study_name=args.study, storage=read_storage(args.storage))
    except KeyError:
        p.error(f"no study {args.study!r} in {args.storage}")
    except AnalysisError as e:
        p.error(str(e))
    data = rows(study)
    print("| trial | cell | state | last step | val mIOU | seconds |")
    print("|---:|---|---|---:|---:|---:|")
    for r in data:
        sec = "n/a" if r["seconds"] is None else f"{r['seconds']:.0f}"
        print(f"| {r['trial']} | `{r['genome']}` | {r['state'].lower()} | {r['last_step']} | {r['value']:.4f} | {sec} |")
    if args.out:
        for path in plot(data, args.out, f"Learning curves of {args.study}"):
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
