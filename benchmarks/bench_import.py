"""DPC-Bench records from evaluations that studies already hold (``bench import STORAGE``).

Every proxy evaluation costs minutes; a search, a noise study or an incumbent's re-training that
trained a cell with a seed on the `cpu` config made exactly the record the collector would make.
``python -m benchmarks.bench import runs/proxy-cpu.journal`` appends those trials to the bench, one
record each, into the directory of their config hash and scene set, and only where the trial can
prove both: its ``config_hash`` must be today's hash of its config on its device type (a trial of
older code or another config goes nowhere) and its ``data`` (``EvalResult.data``, the datasets'
names) must name the three splits of one embedded scene set. A (cell, seed) the directory already
holds is not written again, so importing twice, or a trial the collector also ran, adds nothing.
Each record says where it came from (``source: import``, ``imported_from``: storage, study, trial).

Older trials are proven another way. One hashed with the formula before ``eval_every`` left the
hash (commit ae66973; same fields otherwise) is accepted when that formula gives its hash from
today's config. One run before results recorded their ``data`` takes its scene set from
``--scene-key KEY``, and only on evidence: the bench must already hold some of the storage's
(cell, seed) pairs under that key (the collector starts with the zoo at seed 0), and every
shared pair must agree bit for bit in val and test mIOU; else nothing is imported. Such a record
keeps ``imported_from.config_hash`` (the hash it was stored with) and ``scene_key_from``.
"""
from __future__ import annotations

import datetime
import json
import os
import socket
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.bench import append_record, directory_name, read_records


def scene_key_of(data: Any) -> str | None:
    """The scene key when ``data`` names the train, val and test splits of one embedded scene set."""
    if not isinstance(data, str):
        return None
    names = data.split(",")
    keys = {n[len("scenes-"):-len(f"-{s}")] for n, s in zip(names, ("train", "val", "test"))
            if n.startswith("scenes-") and n.endswith(f"-{s}")}
    return keys.pop() if len(names) == 3 and len(keys) == 1 else None


class ImportRefused(ValueError):
    """A ``--scene-key`` the bench's own records do not confirm."""


def hash_before_eval_every_left(cfg, device_type: str) -> str:
    """``EvalConfig.hash`` as it was before commit ae66973, when ``eval_every`` was still hashed."""
    return cfg.hash(device_type, unhashed=frozenset(("name", "default_budget", "default_reeval_seeds")))


def _list(value: Any) -> Any:
    """Per-class IoU lists may be stored as JSON text in a trial's attributes."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


def record_of(trial, study_name: str, study_attrs: dict, storage_label: str,
              scene_key: str | None = None) -> tuple[dict | None, str]:
    """(record, "") for an importable trial, else (None, why not). ``scene_key`` stands in for a
    trial's missing ``data``; the caller must confirm it (``import_storage`` does)."""
    from dpc.genome import Genome
    from proxy.config import get_config

    a = trial.user_attrs
    if study_attrs.get("objective") not in ("proxy", None) or a.get("config_hash") is None:
        return None, "not a proxy evaluation"
    try:
        cfg = get_config(a.get("config"))
    except (ValueError, TypeError):
        return None, "unknown config"
    device = str(a.get("device", ""))
    device_type = "cpu" if device == "cpu" else "cuda"
    provenance = {"storage": storage_label, "study": study_name, "trial": trial.number}
    if a["config_hash"] == hash_before_eval_every_left(cfg, device_type):
        provenance["config_hash"] = a["config_hash"]
    elif cfg.hash(device_type) != a["config_hash"]:
        return None, "config hash of other code or another config"
    key = scene_key_of(a.get("data"))
    if key is None and a.get("data") is None and scene_key is not None:
        key = provenance["scene_key_from"] = scene_key
    if key is None:
        return None, "no embedded scene set recorded"
    try:
        genome = Genome.parse(a["genome"])
    except (KeyError, ValueError, TypeError):
        return None, "no genome"
    curve = sorted([int(step), float(v)] for step, v in trial.intermediate_values.items())
    iterations = int(a.get("iterations", cfg.iterations))
    if not curve or curve[-1][0] != iterations:
        curve.append([iterations, float(trial.value)])
    record = {
        "genome": str(genome), "canonical_hash": genome.canonical_hash(), "seed": int(a.get("seed", 0)),
        "source": "import", "config": cfg.name, "config_hash": cfg.hash(device_type), "config_dict": cfg.to_dict(),
        "scene_key": key, "hostname": None, "command": study_attrs.get("command"), "versions": None, "torch": None,
        "imported_from": provenance,
        "error": None, "val_miou": float(trial.value), "test_miou": a.get("test_miou"), "curve": curve,
        "per_class_iou": _list(a.get("per_class_iou")), "test_per_class_iou": _list(a.get("test_per_class_iou")),
        "params": a.get("params"), "flops": a.get("flops"), "train_seconds": a.get("train_seconds"),
        "eval_seconds": a.get("eval_seconds"), "iterations": iterations, "train_loss": a.get("train_loss"),
        "device": device, "precision": a.get("precision"),
        "date": (trial.datetime_complete or datetime.datetime.now()).astimezone(datetime.timezone.utc)
        .isoformat(timespec="microseconds"),
    }
    return record, ""


def _confirm_scene_key(directory: Path, asserted: list[dict], scene_key: str) -> None:
    """Raise unless the bench's own records under ``directory`` share a (cell, seed) with the
    asserted records and agree with every shared one bit for bit."""
    proven = {(r["canonical_hash"], int(r["seed"])): r for r in read_records(directory)
              if "scene_key_from" not in (r.get("imported_from") or {})}
    shared = [(r, proven[(r["canonical_hash"], r["seed"])]) for r in asserted
              if (r["canonical_hash"], r["seed"]) in proven]
    if not shared:
        raise ImportRefused(f"--scene-key {scene_key}: {directory} holds none of these trials' (cell, seed) "
                            "to check it against (collect the zoo there first)")
    differ = [(r, h) for r, h in shared if float(r["val_miou"]) != float(h["val_miou"])
              or r["test_miou"] is None or float(r["test_miou"]) != float(h["test_miou"])]
    if differ:
        r, h = differ[0]
        raise ImportRefused(f"--scene-key {scene_key}: {len(differ)} of {len(shared)} shared (cell, seed) differ from "
                            f"the bench (e.g. {r['genome']} seed {r['seed']}: val {r['val_miou']} vs {h['val_miou']}); "
                            "these trials saw other data or code")


def import_storage(storage: str, data_root: str | Path, studies: list[str] | None = None,
                   scene_key: str | None = None) -> dict[str, Any]:
    """Append the importable COMPLETE trials of ``storage`` (all studies, or ``studies``) to the
    bench under ``data_root``; returns counts: written per directory, skipped per reason. Raises ImportRefused before writing anything
    when ``scene_key`` is needed and not confirmed."""
    import optuna
    from optuna.trial import TrialState

    from strategies.storage import open_storage

    st = open_storage(storage, must_exist=True).storage
    names = studies or [s.study_name for s in optuna.get_all_study_summaries(st)]
    root = Path(data_root)
    skipped: Counter = Counter()
    pending: list[tuple[Path, dict]] = []
    for name in names:
        study = optuna.load_study(study_name=name, storage=st)
        attrs = dict(study.user_attrs)
        for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            record, why = record_of(trial, name, attrs, str(storage), scene_key)
            if record is None:
                skipped[why] += 1
            else:
                directory = root / directory_name(record["config"], record["config_hash"], record["scene_key"])
                pending.append((directory, record))
    asserted: dict[Path, list[dict]] = {}
    for directory, record in pending:
        if "scene_key_from" in record["imported_from"]:
            asserted.setdefault(directory, []).append(record)
    for directory, records in asserted.items():
        _confirm_scene_key(directory, records, scene_key)

    held: dict[Path, set] = {}
    shards: dict[Path, Path] = {}
    written: Counter = Counter()
    stem = f"import-{socket.gethostname()}-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
    for directory, record in pending:
        if directory not in held:
            held[directory] = {(r["canonical_hash"], int(r["seed"])) for r in read_records(directory)}
        key = (record["canonical_hash"], record["seed"])
        if key in held[directory]:
            skipped["already in the bench"] += 1
            continue
        shard = shards.setdefault(directory, directory / f"{stem}.jsonl")
        append_record(shard, record)
        held[directory].add(key)
        written[directory.name] += 1
    return {"written": dict(written), "skipped": dict(skipped)}
