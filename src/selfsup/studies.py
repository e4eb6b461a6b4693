"""What makes an augmentation good: short pretrainings that differ only in their views, each scored
with kNN and the linear probe.

Three studies, one per ``selfsup ablate`` mode:

- **drop**: the full pipeline, then without each named augmentation in turn.
- **pairs**: every augmentation of a list alone and in each pair, all others off, as in SimCLR's
  Figure 5 (Chen et al. 2020, Sec. 3): a heat map of linear-probe accuracy. SimCLR transforms one
  branch and leaves the other as the (cropped) image; here **both branches** draw their views
  from the pair, the method's own symmetric setting, so that the map reads "these views alone".
  An augmentation the recipe has off is turned on at SimCLR's ImageNet strength.
- **sweep**: one setting at several values (``augment.brightness=0,0.2,0.4,0.8``): a curve.

Each writes ``OUT/ablation.json`` and ``OUT/report.html`` (pairs and sweep also ``ablation.png``).
"""

from __future__ import annotations

import dataclasses
import sys
import time
from itertools import combinations_with_replacement
from pathlib import Path
from typing import Any

from selfsup import distributed, runs
from selfsup.atomic import write_file, write_text
from selfsup.augment.presets import ABLATIONS, PRESETS
from selfsup.config import Config, apply_overrides
from selfsup.data import DataSplits
from selfsup.data.dataset import train_subset
from selfsup.errors import SelfsupError
from selfsup.evaluate import evaluate_encoder
from selfsup.jsonfile import to_json
from selfsup.methods.recipes import build_config
from selfsup.report import format_ablation
from selfsup.report.page import document, esc, img, table, write_page
from selfsup.report.studies import format_pairs, format_sweep, pair_heat_map, sweep_curves
from selfsup.train import run_pretraining
from selfsup.train.device import resolve_device

DEFAULT_DROPS = ["crop", "color", "grayscale", "blur", "flip"]

_SIMCLR = PRESETS["simclr"]
SWITCH_ON: dict[str, Any] = {
    "crop": lambda a: (
        []
        if tuple(a.crop_scale) != (1.0, 1.0)
        else [
            f"augment.crop_scale={list(_SIMCLR['crop_scale'])}",
            f"augment.crop_ratio={list(_SIMCLR['crop_ratio'])}",
        ]
    ),
    "color": lambda a: (
        ([] if a.jitter_p > 0 else [f"augment.jitter_p={_SIMCLR['jitter_p']}"])
        + (
            []
            if any((a.brightness, a.contrast, a.saturation, a.hue))
            else [f"augment.{k}={_SIMCLR[k]}" for k in ("brightness", "contrast", "saturation", "hue")]
        )
    ),
    "grayscale": lambda a: [] if a.grayscale_p > 0 else [f"augment.grayscale_p={_SIMCLR['grayscale_p']}"],
    "blur": lambda a: [] if max(a.blur_p) > 0 else [f"augment.blur_p={_SIMCLR['blur_p']}"],
    "solarize": lambda a: [] if max(a.solarize_p) > 0 else ["augment.solarize_p=[0.2]"],  # BYOL's view 2
    "flip": lambda a: [] if a.flip_p > 0 else [f"augment.flip_p={_SIMCLR['flip_p']}"],
}
"""What turns each augmentation on where the recipe has it off (the recipe's own strength stands
where it has one): SimCLR's ImageNet values (App. A), and BYOL's solarisation probability."""


def pair_overrides(names: tuple[str, ...], full: Config) -> list[str]:
    """Overrides that leave only ``names`` (one or two augmentations, or none) on, each at the
    recipe's strength or :data:`SWITCH_ON`'s."""
    out = [o for other in ABLATIONS if other not in names for o in ABLATIONS[other]]
    return out + [o for name in dict.fromkeys(names) for o in SWITCH_ON[name](full.augment)]


def parse_sweep(sweep: str) -> tuple[str, list[str]]:
    """``KEY=V1,V2,...`` -> the key and its values as written (commas inside brackets stay:
    ``augment.crop_scale=[0.08,1],[0.5,1]``). Raises :class:`SelfsupError` unless there are at least two."""
    key, _, raw = sweep.partition("=")
    values, depth, current = [], 0, ""
    for char in raw:
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            values.append(current.strip())
            current = ""
        else:
            current += char
    values.append(current.strip())
    values = [v for v in values if v]
    if not key.strip() or len(values) < 2:
        raise SelfsupError(
            f"--sweep takes KEY=V1,V2,... with two values or more "
            f"(e.g. augment.brightness=0,0.4,0.8), got '{sweep}'"
        )
    return key.strip(), values


def ablate(
    method: str,
    data: str,
    *,
    drop: list[str] | None = None,
    pairs: list[str] | None = None,
    sweep: str | None = None,
    out: str | Path,
    labels: list[str] | None = None,
    seeds: int | None = None,
    subset: int | None = None,
    overrides=(),
    flags: dict | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run one study (at most one of ``drop``, ``pairs``, ``sweep``; none: drop
    :data:`DEFAULT_DROPS`) of ``method`` on ``data`` into ``out``; see the module docstring and
    :func:`selfsup.api.ablate`, which calls it."""
    kind, names, key = _which_study(drop, pairs, sweep)
    out = Path(out)
    full, splits = runs.resolve(method, data, overrides=overrides, flags=flags, progress=progress)
    if not hasattr(splits.train, "images"):
        raise SelfsupError("ablate studies augmentations of images; this is a text corpus")
    small = runs.small_images(splits)
    pretraining = _pretraining_split(splits, subset)
    rows = []
    for name, more in _plan(kind, names, key, full):
        config = (
            full
            if not more
            else build_config(method, small_images=small, flags=flags, overrides=[*overrides, *more])
        )
        if kind == "drop" and name != "full" and config.augment == full.augment:
            rows.append({"drop": name, "note": "not in this pipeline"})
            continue
        if progress and distributed.is_main():
            print(f"selfsup: ablation '{name}'", file=sys.stderr)
        row = _train_and_score(
            config, pretraining, splits, out / _folder(kind, name), labels, seeds, progress
        )
        if row:  # empty in a torchrun process other than rank 0
            rows.append({"drop" if kind == "drop" else "run": name, **row})
    if not distributed.is_main():
        return {}
    return _save(out, kind, method, data, full, rows, names, key, len(pretraining.train))


def _pretraining_split(splits: DataSplits, subset: int | None) -> DataSplits:
    """The splits each run pretrains on: ``splits``, or a class-balanced subset of ``subset``
    training images (seed 0, as ``benchmarks/methods.py`` draws it)."""
    if subset is None or subset == len(splits.train):
        return splits
    classes = len(splits.train.present_classes()) if splits.train.labels is not None else 0
    if not max(classes, 1) <= subset < len(splits.train):
        raise SelfsupError(
            f"--subset must lie between the number of classes ({classes}) and the "
            f"{len(splits.train)} training images, got {subset}"
        )
    if classes == 0:
        raise SelfsupError("--subset draws a class-balanced subset; this training split has no labels")
    return train_subset(splits, subset)


def _which_study(drop, pairs, sweep) -> tuple[str, list[str], str]:
    """The study asked for: its kind, its augmentations (or the swept values) and the swept key."""
    if sum(x is not None for x in (drop, pairs, sweep)) > 1:
        raise SelfsupError("give one of --drop, --pairs and --sweep")
    if sweep is not None:
        key, values = parse_sweep(sweep)
        return "sweep", values, key
    kind = "pairs" if pairs is not None else "drop"
    names = pairs if pairs is not None else drop if drop is not None else DEFAULT_DROPS
    unknown = [n for n in names if n not in ABLATIONS]
    if unknown or not names or len(set(names)) != len(names):
        raise SelfsupError(
            f"--{kind} takes distinct augmentations from {', '.join(ABLATIONS)}; "
            f"got {','.join(names) or 'none'}"
        )
    return kind, names, ""


def _plan(kind: str, names: list[str], key: str, full: Config) -> list[tuple[str, list[str]]]:
    """The study's runs: each its name and the overrides that make it (none: the full pipeline)."""
    if kind == "drop":
        return [("full", [])] + [(n, ABLATIONS[n]) for n in names]
    if kind == "sweep":
        return [(v, [f"{key}={v}"]) for v in names]
    pairs = combinations_with_replacement(names, 2)
    return [("none", pair_overrides((), full))] + [
        ("+".join(dict.fromkeys(p)), pair_overrides(p, full)) for p in pairs
    ]


def _folder(kind: str, name: str) -> str:
    return name if kind == "drop" else f"{kind}-{name}".replace("/", "_")


def _train_and_score(
    config: Config, pretraining: DataSplits, splits: DataSplits, run_dir: Path, labels, seeds, progress: bool
) -> dict[str, Any]:
    """Pretrain ``config`` on ``pretraining`` into ``run_dir``, score its encoder with kNN and the
    linear probe on ``splits`` (on rank 0; written to ``eval.json``); the row of the study."""
    result = run_pretraining(config, pretraining, run_dir, overwrite=True, progress=progress)
    if not distributed.is_main():
        return {}
    apply_overrides(
        config, (), {"eval.labels": labels, "eval.seeds": seeds, "eval.protocols": ["knn", "linear"]}
    )
    device = resolve_device(config.train.device)
    started = time.perf_counter()
    evaluation = evaluate_encoder(
        runs.load_encoder(run_dir, device),
        splits,
        config.eval,
        device,
        runs.run_precision(run_dir, config, device),
        progress=progress,
    )
    evaluation["seconds"] = time.perf_counter() - started
    write_text(run_dir / runs.EVAL_FILE, to_json(evaluation, indent=2))
    return {
        "results": evaluation["results"],
        "pretrain_seconds": result.seconds,
        "final_loss": result.final_loss,
        "augment": dataclasses.asdict(config.augment),
    }


def _save(
    out: Path, kind: str, method: str, data: str, full: Config, rows, names, key, images: int
) -> dict[str, Any]:
    study: dict[str, Any] = {
        "kind": kind,
        "method": method,
        "data": str(data),
        "pretrain_images": images,
        "epochs": full.train.epochs,
        "augment": dataclasses.asdict(full.augment),
        "rows": rows,
    }
    out.mkdir(parents=True, exist_ok=True)
    body = [
        f"<h1>{esc(kind)} study of {esc(method)} on {esc(data)}</h1>",
        f"<p>{full.train.epochs} epochs on {images} training images each</p>",
    ]
    if kind == "drop":
        study["table"] = format_ablation(rows)
    elif kind == "pairs":
        study["names"] = names
        study["table"], matrix, budget = format_pairs(rows, names)
        study["matrix"], study["budget"] = matrix, budget
        figure = pair_heat_map(matrix, names, f"{method}: linear probe, {budget} labels")
    else:
        study["key"] = key
        study["table"] = format_sweep(rows, key)
        figure = sweep_curves(rows, key, method)
    if kind != "drop":
        write_file(
            out / "ablation.png", lambda h: figure.savefig(h, format="png", dpi=120, bbox_inches="tight")
        )
        body.append(img(figure, f"{kind} study", plot=True))
    body.append(f"<pre>{esc(study['table'])}</pre>")
    body.append(table(["setting", "value"], [[k, v] for k, v in study["augment"].items()]))
    write_text(out / "ablation.json", to_json(study, indent=2))
    files = {"file": out / "ablation.json", "report": out / "report.html"}
    if kind != "drop":
        files["figure"] = out / "ablation.png"
    write_page(files["report"], document(f"selfsup ablate {kind}", body))
    return {**study, **files}
