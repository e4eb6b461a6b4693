"""The verbs of the `selfsup` command as Python functions: they return values and print only
progress (on stderr, with ``progress``); :mod:`selfsup.cli` prints their results. The options of
each verb are described once, in :mod:`selfsup.verbs`: the keyword parameters below that set a
configuration key reach the configuration through :meth:`selfsup.verbs.Verb.flags`."""

from __future__ import annotations

import copy
import csv
import dataclasses
import io
import json
import os
import sys
import time
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from selfsup import atomic, distributed, runs
from selfsup.atomic import write_text
from selfsup.config import apply_overrides
from selfsup.data import DataSplits, ImageDataset, load_data
from selfsup.errors import SelfsupError
from selfsup.evaluate import evaluate_encoder
from selfsup.evaluate.features import save_features
from selfsup.jsonfile import to_json
from selfsup.methods import METHODS
from selfsup.models.backbones import register_backbone
from selfsup.report import comparison, write_report
from selfsup.runs import EVAL_FILE, load_method, load_splits, resolve
from selfsup.train import PretrainResult, run_pretraining
from selfsup.train.device import resolve_device
from selfsup.train.machine import peak_memory_mb
from selfsup.verbs import ABLATE, EMBED, EVALUATE, FIT, PRETRAIN, SELECT


def _need_images(splits: DataSplits, verb: str) -> None:
    if not isinstance(splits.train, ImageDataset):
        raise SelfsupError(f"`selfsup {verb}` works on image augmentations; {splits.source} is a text corpus")


def _data_name(data: str) -> str:
    """A short name of the data for a default run directory: ``./pets.tar.gz`` -> ``pets``."""
    return Path(data).name.split(".")[0] if isinstance(data, (str, os.PathLike)) else "python"


def pretrain(
    method: str = "simclr",
    data: Any = "digits",
    *,
    out: str | Path | None = None,
    backbone: str | torch.nn.Module | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    seed: int | None = None,
    device: str | None = None,
    config: str | None = None,
    overrides=(),
    resume: bool = False,
    overwrite: bool = False,
    skip_bad_images: bool | None = None,
    progress: bool = True,
    report: bool = True,
    tensorboard: bool | None = None,
) -> PretrainResult:
    """Pretrain an encoder with ``method`` on ``data`` (``digits``, a path, or from Python a tensor,
    array, ``(images, labels)`` or Dataset: :mod:`selfsup.data.python_data`) and write its report;
    see ``selfsup pretrain --help`` (an option given as None keeps the recipe's value).
    ``backbone`` may be the user's own ``nn.Module`` (images -> features; the run saves it whole).
    Raises :class:`SelfsupError` for a bad option, data set or run directory."""
    if isinstance(backbone, torch.nn.Module):
        backbone = register_backbone(backbone)
    flags = PRETRAIN.flags(locals())
    resolved, splits = resolve(
        method, data, config=config, overrides=overrides, flags=flags, progress=progress
    )
    if out is None:
        out = Path("runs") / f"{method}-{_data_name(data)}-{datetime.now():%Y%m%d-%H%M%S}"
    result = run_pretraining(resolved, splits, out, resume=resume, overwrite=overwrite, progress=progress)
    if report and result.saved:
        _write_report(result.run_dir, device, progress)
    return result


def _write_report(run_dir: Path, device: str | None, progress: bool) -> None:
    """RUN_DIR/report.html after a pretraining or an evaluation, unless SELFSUP_REPORT=0; a failure
    is a warning (the run itself is saved), and ``selfsup report RUN_DIR`` tries again."""
    if os.environ.get("SELFSUP_REPORT", "1") == "0":
        return
    try:
        path = write_report(run_dir, device)
    except Exception as exc:  # noqa: BLE001 - the run is already saved; say why the page is missing
        warnings.warn(
            f"{run_dir}/report.html was not written ({type(exc).__name__}: {exc}); "
            f"`selfsup report {run_dir}` tries again"
        )
        return
    if progress:
        print(f"selfsup: report in {path}", file=sys.stderr)


def report(run_dir: str | Path, *, device: str | None = None) -> Path:
    """(Re)write ``RUN_DIR/report.html`` from what the run directory holds; returns its path.
    Raises :class:`SelfsupError` where ``run_dir`` is not a run directory."""
    return write_report(run_dir, device)


def compare(run_dirs: list[str | Path], *, out: str | Path = "comparison.html") -> tuple[Path, str]:
    """Write a page comparing ``run_dirs`` (accuracy per label budget, wall time, curves overlaid)
    to ``out``; returns its path and the table as Markdown. Raises :class:`SelfsupError` without
    runs or where one is not a run directory."""
    if len(run_dirs) < 1:
        raise SelfsupError("compare needs at least one run directory")
    return comparison(run_dirs, out)


def evaluate(
    run_dir: str | Path,
    *,
    data: Any = None,
    labels: list[str] | None = None,
    strategies: list[str] | None = None,
    labelled: str | Path | None = None,
    seeds: int | None = None,
    protocols: list[str] | None = None,
    device: str | None = None,
    overrides=(),
    progress: bool = True,
    report: bool = True,
) -> dict:
    """Evaluate a run's encoder with few labels and write ``RUN_DIR/eval.json``; returns its content.
    ``labels``: budgets (:mod:`selfsup.evaluate.budgets`); ``strategies``: how counts of items are
    picked (:mod:`selfsup.labelling.strategies`); ``labelled``: a labels file whose labels alone
    train the protocols (:mod:`selfsup.labelling.labels`). Under torchrun it runs in the process
    of rank 0 (the others return an empty dict). Raises :class:`SelfsupError` for a missing run or
    data, a bad label budget, strategy, protocol or labels file."""
    if not distributed.is_main():
        return {}
    from_python = data is not None and not isinstance(data, (str, os.PathLike))  # a tensor, a Dataset
    flags = EVALUATE.flags({**locals(), "data": None if from_python else data})
    run_dir = Path(run_dir)
    config = _run_config(run_dir, overrides, flags, check_data=not from_python)
    splits = load_data(data) if from_python else load_splits(config, progress)
    torch_device = resolve_device(config.train.device)
    encoder = runs.load_encoder(run_dir, torch_device)
    started = time.perf_counter()
    precision = runs.run_precision(run_dir, config, torch_device)
    given = None
    if labelled is not None:
        from selfsup.labelling.labels import read_labels

        given = read_labels(labelled, splits)
    evaluation = evaluate_encoder(
        encoder, splits, config.eval, torch_device, precision, progress=progress, labelled=given
    )
    evaluation["seconds"] = time.perf_counter() - started
    evaluation["eval_config"] = dataclasses.asdict(config.eval)
    write_text(run_dir / EVAL_FILE, to_json(evaluation, indent=2))
    if report:
        _write_report(run_dir, device, progress)
    return evaluation


def select(
    run_dir: str | Path,
    *,
    budget: int,
    strategy: str = "typiclust",
    data: str | None = None,
    labelled: str | Path | None = None,
    seed: int = 0,
    features: str | Path | None = None,
    out: str | Path | None = None,
    device: str | None = None,
    overrides=(),
    progress: bool = True,
) -> dict:
    """Pick ``budget`` training items of the run's data (or ``data``) for the user to label, by
    ``strategy`` (:mod:`selfsup.labelling.strategies`) on the run's encoder's features (embedded a
    batch at a time from the store, or read from ``features``, a ``selfsup embed`` file of the same
    data); ``labelled`` (a labels file, :mod:`selfsup.labelling.labels`): the items labelled
    already, which the picks complement. Writes ``out`` (default ``RUN_DIR/picks.csv``), its Label
    Studio tasks (``.labelstudio.json``) and interface (``.labelstudio.xml``), and a page of the
    picks (``.html``). Returns what was picked and where it went. Raises :class:`SelfsupError`
    for a missing run or data, a bad budget, strategy or labels file."""
    from selfsup.evaluate.features import extract_features
    from selfsup.labelling.labels import label_studio_files, read_labels, write_picks_csv
    from selfsup.labelling.strategies import check_budget, pick
    from selfsup.report.picks import picks_page

    flags = SELECT.flags(locals())
    run_dir, started = Path(run_dir), time.perf_counter()
    out = _csv_out(out if out is not None else run_dir / "picks.csv")
    if labelled is not None and out.resolve() == Path(labelled).expanduser().resolve():
        raise SelfsupError(f"--out {out} is the labels file given with --labelled: write the picks elsewhere")
    config = _run_config(run_dir, overrides, flags)
    splits = load_splits(config, progress)
    train = splits.train
    known = read_labels(labelled, splits) if labelled is not None else None
    check_budget(len(train), budget, known.rows if known else np.zeros(0, dtype=np.int64))
    torch_device = resolve_device(config.train.device)
    if features is not None:
        matrix = _embedded_features(Path(features), train)
    else:
        encoder = runs.load_encoder(run_dir, torch_device)
        precision = runs.run_precision(run_dir, config, torch_device)
        matrix = extract_features(encoder, encoder.inputs(train), torch_device, precision).numpy()
    chosen = pick(strategy, matrix, budget, known.rows if known else (), seed=seed, progress=progress)
    images = getattr(train, "images", None)
    rows = []
    for rank, (row, cluster, score) in enumerate(zip(chosen.rows, chosen.cluster, chosen.score), start=1):
        item = {"rank": rank, "index": int(train.indices()[row])}
        if images is None:
            item["text"] = train.texts[int(row)]
        elif getattr(train, "names", None):  # data without files (arrays, digits) have none
            item["path"] = train.names[row]
        item |= {"cluster": int(cluster), "score": "" if score != score else f"{score:.6g}", "label": ""}
        rows.append(item)
    picked = images[torch.as_tensor(chosen.rows)] if images is not None else None
    out.parent.mkdir(parents=True, exist_ok=True)
    stem = out.with_suffix("")
    files = {
        "csv": str(out),
        "tasks": f"{stem}.labelstudio.json",
        "interface": f"{stem}.labelstudio.xml",
        "page": f"{stem}.html",
    }
    classes = known.classes() if known else train.classes
    write_picks_csv(out, rows)
    label_studio_files(Path(files["tasks"]), Path(files["interface"]), rows, picked, classes)
    summary = {
        "strategy": strategy,
        "budget": budget,
        "seed": seed,
        "note": chosen.note,
        "data": splits.source,
        "pool": len(train),
        "labelled": len(known) if known else 0,
        "index": [r["index"] for r in rows],
        **files,
    }
    picks_page(Path(files["page"]), rows, picked, summary)
    summary["seconds"] = time.perf_counter() - started
    return summary


def fit(
    run_dir: str | Path,
    *,
    labelled: str | Path | None = None,
    budget: int | None = None,
    strategy: str = "typiclust",
    data: str | None = None,
    protocol: str = "auto",
    semi: str = "propagate",
    student: str | None = None,
    seed: int = 0,
    out: str | Path | None = None,
    device: str | None = None,
    overrides=(),
    progress: bool = True,
) -> dict:
    """Fit the task model of the run's encoder (:mod:`selfsup.task.fit`) on the labels of
    ``labelled`` (a labels file), or of ``budget`` items picked by ``strategy`` with their labels
    read from the data (the labeller simulated, for benchmarks and demos), and the unlabelled
    training items (``semi``); write it to ``out`` (default ``RUN_DIR/model``; see
    :mod:`selfsup.models.classifier`) with its page. Returns ``classifier.json``'s content. Raises
    :class:`SelfsupError` for a missing run or data, no labels, labels of one class, a bad
    protocol, stage, strategy or student."""
    from selfsup.augment import ViewAugmenter
    from selfsup.config import save_config
    from selfsup.labelling.labels import read_labels
    from selfsup.models.classifier import save_classifier
    from selfsup.report.task import confident_examples, task_page
    from selfsup.task import fit as task

    task.check_choices(protocol, semi)
    flags = FIT.flags(locals())
    run_dir, started = Path(run_dir), time.perf_counter()
    out = Path(out) if out is not None else run_dir / "model"
    config = _run_config(run_dir, overrides, flags)
    splits = load_splits(config, progress)
    train = splits.train
    torch_device = resolve_device(config.train.device)
    precision = runs.run_precision(run_dir, config, torch_device)
    encoder = runs.load_encoder(run_dir, torch_device)
    if hasattr(encoder, "for_classification"):  # a checkpoint's own head and pooling: exports as hf
        encoder = encoder.for_classification(seed)
    images = isinstance(train, ImageDataset)
    fitting = task.Fitting(
        encoder,
        encoder.inputs(train),
        config.eval,
        torch_device,
        precision,
        seed,
        progress,
        ViewAugmenter(config.augment) if images else None,
    )
    labels, source = _task_labels(fitting, splits, labelled, budget, strategy, read_labels)
    fitting.say(source)
    if len(labels.classes) < 2:
        raise SelfsupError(
            f"the labels name one class ('{labels.classes[0]}'): a classifier needs two or more"
        )
    if protocol == "auto":
        chosen, why = task.choose_protocol(fitting, labels)
    else:
        chosen, why = protocol, "as asked"
    fitting.say(f"protocol {why}")
    model = task.first_stage(fitting, labels, chosen)
    if semi == "propagate":
        model = task.propagate(fitting, labels, model)
    elif semi == "self-train":
        model = task.self_train(fitting, labels, model, chosen)
    elif semi == "distill":
        model = task.distill(fitting, labels, model, _student(student, encoder, config))
    validation, how = task.cross_validate(fitting, labels, chosen, semi)
    model = model.to(torch_device).eval()
    scored, examples, test_accuracy = _score_task_model(
        model, splits, fitting, labels.classes, confident_examples
    )
    facts = {
        "run_dir": str(run_dir.resolve()),
        "data": splits.source,
        "labels": source,
        "labelled_items": len(labels.rows),
        "protocol": chosen,
        "protocol_choice": why,
        "semi": semi,
        "student": (student or "the run's backbone") if semi == "distill" else None,
        "seed": seed,
        "validation_accuracy": validation,
        "validation": how,
        "test_accuracy": test_accuracy,
        "notes": fitting.notes,
        "settings": dataclasses.asdict(config.eval),
    }
    model.classes = labels.classes
    save_classifier(model.cpu(), out, facts)
    save_config(config, out / "config.yaml")
    facts["seconds"] = time.perf_counter() - started
    facts["page"] = str(
        task_page(out / "report.html", {**facts, "classes": labels.classes}, scored, examples)
    )
    return {**facts, "model_dir": str(out), "classes": labels.classes}


def predict(
    model_dir: str | Path,
    *,
    data: str,
    out: str | Path = "predictions.csv",
    top_k: int = 1,
    device: str | None = None,
    progress: bool = True,
) -> dict:
    """Write the task model's predictions for every item of ``data`` to ``out``: one row per item,
    ``index``, ``path`` (or ``text``), ``label``, ``probability`` and, with ``top_k`` K, ``label_2``,
    ``probability_2``, ... up to K; streamed a batch at a time. Images are resized as the run's
    were (``data.image_size``; to the model's side where the run's images were all one size).
    Returns where the predictions went and how many. Raises :class:`SelfsupError` for a folder
    that is not a model, data of another modality or channel count, or a bad ``top_k``."""
    from selfsup.evaluate.features import feature_batches
    from selfsup.models.classifier import load_classifier

    started = time.perf_counter()
    out = _csv_out(out)
    torch_device = resolve_device(device or "auto")
    model = load_classifier(model_dir, torch_device)
    if not 1 <= top_k <= len(model.classes):
        raise SelfsupError(f"--top-k must lie in 1..{len(model.classes)} (the model's classes), got {top_k}")
    config = runs.load_run_config(model_dir)  # the run's settings, saved beside the model
    config.data.spec = str(data)
    splits = _prediction_data(config, model)
    text = not isinstance(splits.train, ImageDataset)
    if progress:
        items = len(splits.train) + (len(splits.test) if splits.test is not None else 0)
        print(f"selfsup: predicting {items} {'texts' if text else 'images'} of {data}", file=sys.stderr)
    columns = ["index", "text" if text else "path", "label", "probability"]
    columns += [f"{name}_{k}" for k in range(2, top_k + 1) for name in ("label", "probability")]
    count = 0

    def write(handle) -> None:
        nonlocal count
        handle.write((",".join(columns) + "\n").encode())
        for dataset in (d for d in (splits.train, splits.test) if d is not None):
            names = dataset.texts if text else getattr(dataset, "names", None)
            index = dataset.indices().tolist()
            batches = feature_batches(model, model.inputs(dataset), torch_device)
            for start, probabilities in tqdm(batches, desc="predicting", disable=not progress, leave=False):
                top, classes = probabilities.topk(top_k, dim=1)
                buffer = io.StringIO()
                rows = csv.writer(buffer, lineterminator="\n")
                for i in range(len(probabilities)):
                    row = [index[start + i], names[start + i] if names is not None else ""]
                    for k in range(top_k):
                        row += [model.classes[int(classes[i, k])], f"{float(top[i, k]):.6f}"]
                    rows.writerow(row)
                handle.write(buffer.getvalue().encode())
                count += len(probabilities)

    out.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_file(out, write)
    return {
        "out": str(out),
        "items": count,
        "classes": model.classes,
        "seconds": time.perf_counter() - started,
    }


def _prediction_data(config, model) -> DataSplits:
    """The data to predict, read as the model's run read its own; raises :class:`SelfsupError`
    where they are of another modality or channel count than the model takes. Quiet: the data's
    splits (and a held-out part) mean nothing to prediction, which reads every item."""
    splits = load_splits(config, False)
    spec = getattr(model.encoder, "spec", {})
    if spec.get("modality") == "text" or not hasattr(model.encoder, "spec"):
        if isinstance(splits.train, ImageDataset):
            raise SelfsupError(f"{config.data.spec} holds images; this model classifies texts")
        return splits
    if not isinstance(splits.train, ImageDataset):
        raise SelfsupError(f"{config.data.spec} holds texts; this model classifies images")
    channels, size = splits.train.images.shape[1], list(splits.train.images.shape[2:])
    if channels != spec["in_channels"]:
        raise SelfsupError(
            f"{config.data.spec}: {channels}-channel images; the model takes {spec['in_channels']} channels"
        )
    if size != spec["input_size"] and config.data.image_size is None:
        height, width = spec["input_size"]
        if height != width:
            raise SelfsupError(
                f"{config.data.spec} has {size[0]}×{size[1]} images; the model takes {height}×{width} ones"
            )
        config.data.image_size = height  # resized and centre-cropped, as data.image_size does
        splits = load_splits(config, False)
    return splits


def _task_labels(fitting, splits, labelled, budget, strategy, read_labels):
    """The labelled items of ``fit`` and where their labels came from."""
    from selfsup.labelling.labels import class_indices, class_order
    from selfsup.labelling.strategies import check_budget, pick
    from selfsup.task.fit import Labelled

    train = splits.train
    if labelled is not None:
        given = read_labels(labelled, splits)
        classes = given.classes()
        rows = torch.as_tensor(given.rows)
        return Labelled(
            rows, class_indices(given.names, classes), classes
        ), f"{len(rows)} labels from {given.source}"
    if budget is None:
        raise SelfsupError(
            "fit needs labels: --labelled FILE (select's CSV filled in, or a Label Studio export), or "
            "--budget N to pick N items and read their labels from the data (a simulated labeller)"
        )
    pool = train.labelled_index()
    if len(pool) == 0:
        raise SelfsupError(f"--budget reads the picks' labels from the data, and {splits.source} has none")
    check_budget(len(pool), budget, np.zeros(0, dtype=np.int64))
    picked = pick(strategy, fitting.features()[pool].numpy(), budget, seed=fitting.seed)
    rows = torch.sort(pool[torch.as_tensor(picked.rows)]).values
    names = [train.classes[int(c)] for c in train.labels[rows]]
    classes = class_order(names)
    labels = class_indices(names, classes)
    source = f"{budget} items picked by {strategy}, their labels read from the data (the labeller simulated)"
    return Labelled(rows, labels, classes), source


def _student(student: str | None, encoder, config):
    """The student of distillation: the run's encoder (its pretrained weights) by default, or a
    fresh ``student`` backbone (images) with the run's input statistics."""
    if student is None:
        return copy.deepcopy(encoder)
    if not hasattr(encoder, "spec") or encoder.spec.get("modality") == "text":
        raise SelfsupError("--student names an image backbone; a text run distils into its own transformer")
    from selfsup.models.encoder import Encoder

    spec = {**encoder.spec, "backbone": student, "depth": 0, "patch_size": 0}
    return Encoder(**spec)


def _score_task_model(model, splits, fitting, classes, confident_examples):
    """The page's test scores (per class, confusion) and examples, and the test accuracy; the
    examples come from the training items where there is no labelled test split."""
    from selfsup.evaluate.features import extract_features

    test = splits.test
    labelled_test = test is not None and test.labelled
    data = test if labelled_test else splits.train
    if not labelled_test and model.encoder is fitting.encoder:  # the training features exist
        probabilities = torch.softmax(model.head.cpu()(fitting.features()), dim=1).detach()
        model.head.to(fitting.device)
    else:
        probabilities = extract_features(model, model.inputs(data), fitting.device, fitting.amp_dtype)
    truth = None
    scored, accuracy = None, None
    if labelled_test:
        names = [test.classes[int(c)] if c >= 0 else None for c in test.labels]
        truth = names
        known = {name: i for i, name in enumerate(classes)}
        predicted = probabilities.argmax(dim=1).tolist()
        per_class, confusion = [], []
        test_classes = [c for c in test.classes if c in set(names)]
        for true in test_classes:
            members = [i for i, n in enumerate(names) if n == true]
            hits = sum(1 for i in members if classes[predicted[i]] == true)
            per_class.append((true, hits / len(members), len(members)))
            confusion.append([sum(1 for i in members if predicted[i] == known.get(c, -1)) for c in classes])
        scored_items = [i for i, n in enumerate(names) if n is not None]
        accuracy = sum(classes[predicted[i]] == names[i] for i in scored_items) / max(1, len(scored_items))
        scored = {"classes": classes, "rows": test_classes, "per_class": per_class, "confusion": confusion}
    items = (lambda i: data.images[i]) if hasattr(data, "images") else (lambda i: data.texts[i])
    return scored, confident_examples(probabilities, classes, truth, items), accuracy


def _csv_out(out: str | Path) -> Path:
    """``--out`` as a path; raises :class:`SelfsupError` unless it names a .csv file."""
    out = Path(out)
    if out.suffix.lower() != ".csv":
        raise SelfsupError(f"--out must name a .csv file, got {out}")
    return out


def _run_config(run_dir: Path, overrides, flags: dict, check_data: bool = True):
    """The configuration of the run in ``run_dir`` with ``overrides`` and ``flags`` applied;
    raises :class:`SelfsupError` where the run, or (``check_data``) its data, is missing."""
    if not run_dir.is_dir():
        raise SelfsupError(f"run directory not found: {run_dir}")
    config = runs.load_run_config(run_dir)
    apply_overrides(config, overrides, flags)
    if check_data and config.data.spec != "digits" and not Path(config.data.spec).expanduser().exists():
        if flags.get("data.spec") is not None:
            raise SelfsupError(f"data path not found: {config.data.spec}")
        raise SelfsupError(
            f"the run's data {config.data.spec} are not there any more; pass --data PATH (from Python: data=)"
        )
    return config


def _embedded_features(path: Path, train) -> np.ndarray:
    """The rows of a ``selfsup embed`` file (``path`` and its ``.json``) of the training items of
    ``train``, in their order; raises :class:`SelfsupError` where they are not those items."""
    meta_path = path.with_suffix(".json")
    if not path.exists() or not meta_path.exists():
        raise SelfsupError(f"--features: {path} and {meta_path} (what `selfsup embed` writes) are needed")
    meta = json.loads(meta_path.read_text())
    if "index" not in meta:
        raise SelfsupError(
            f"--features: {meta_path} has no item indices; embed the data again with this version"
        )
    rows = {(split, index): row for row, (split, index) in enumerate(zip(meta["split"], meta["index"]))}
    try:
        order = [rows[("train", int(i))] for i in train.indices().tolist()]
    except KeyError as missing:
        raise SelfsupError(
            f"--features: {path} lacks training item {missing.args[0][1]}: embed the same data"
        ) from None
    return np.load(path, mmap_mode="r")[np.array(order)]


def embed(
    run_dir: str | Path,
    data: str,
    out: str | Path,
    *,
    device: str | None = None,
    overrides=(),
    progress: bool = False,
) -> Path:
    """Write the encoder's features of every image of ``data`` to ``out`` (.npy, N×D float32).

    Beside it, ``<out stem>.json`` gives each row's split, ``index`` (its position in the data,
    :attr:`~selfsup.data.dataset.LabelledData.item_index`), label (or null) and ``path`` (or
    null), and the class names. Rows are the training split, then the test split. ``overrides``
    (``key=value``) change how the data are read, e.g. ``data.image_size=32``. Raises
    :class:`SelfsupError` for an ``out`` that is not a .npy file, or images the encoder cannot take.
    """
    flags = EMBED.flags(locals())
    out = Path(out)
    if out.suffix != ".npy":
        raise SelfsupError(f"--out must name a .npy file, got {out}")
    torch_device = resolve_device(device or "auto")
    encoder = runs.load_encoder(run_dir, torch_device)
    config = runs.load_run_config(Path(run_dir))
    apply_overrides(config, overrides, flags)
    splits = load_splits(config, progress)
    parts = [("train", splits.train)] + ([("test", splits.test)] if splits.test is not None else [])
    meta = {"split": [], "index": [], "label": [], "path": [], "classes": splits.train.classes}
    for split, dataset in parts:
        inputs = encoder.inputs(dataset)
        expected = encoder.spec["in_channels"] if isinstance(dataset, ImageDataset) else None
        if expected is not None and inputs.shape[1] != expected:
            raise SelfsupError(f"{data} has {inputs.shape[1]}-channel images; the encoder expects {expected}")
        labels = dataset.labels.tolist() if dataset.labelled else [-1] * len(dataset)
        meta["split"] += [split] * len(dataset)
        meta["index"] += dataset.indices().tolist()
        meta["label"] += [label if label >= 0 else None for label in labels]
        meta["path"] += getattr(dataset, "names", None) or [None] * len(dataset)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_features(encoder, [encoder.inputs(dataset) for _, dataset in parts], torch_device, out)
    write_text(out.with_suffix(".json"), to_json(meta))
    return out


def _text_run(run_dir: str | Path, method_name: str, verb: str, device: str | None):
    method, config = load_method(run_dir, device)
    if config.method_name != method_name:
        raise SelfsupError(
            f"`selfsup {verb}` needs a {method_name} run; {run_dir} is a {config.method_name} run"
        )
    return method


def denoise(
    run_dir: str | Path, text: str, *, seed: int = 0, noise: bool = True, device: str | None = None
) -> dict[str, str]:
    """Noise ``text`` with a BART run's own noising functions (unless ``noise`` is False: then each
    ``<mask>`` in it is a mask token) and decode the model's reconstruction greedily. Returns the
    input, the noised text and the reconstruction. Raises :class:`SelfsupError` for a run that is
    not a BART run, or an empty text."""
    from selfsup.data.tokenizer import encode_documents, encode_marked_masks

    method = _text_run(run_dir, "bart", "denoise", device)
    if not text.strip():
        raise SelfsupError("give a text to denoise")
    tokenizer, length = method.encoder.tokenizer, method.encoder.max_length
    ids = (
        encode_documents(tokenizer, [text], length) if noise else encode_marked_masks(tokenizer, text, length)
    )
    device_ids = ids.to(next(method.parameters()).device)
    torch.manual_seed(seed)
    noisy = method.noise(device_ids) if noise else device_ids
    rebuilt = method.reconstruct(noisy, 2 * ids.shape[1])
    return {"input": text, "noised": method.decode(noisy)[0], "reconstruction": method.decode(rebuilt)[0]}


def generate(
    run_dir: str | Path,
    prompt: str = "",
    *,
    tokens: int = 200,
    temperature: float | None = None,
    top_k: int | None = None,
    seed: int = 0,
    device: str | None = None,
) -> str:
    """Sample a continuation of ``prompt`` from a causal LM run: ``tokens`` tokens at ``temperature``
    (default: the run's), from the ``top_k`` most likely (0: all). Returns prompt + continuation.
    Raises :class:`SelfsupError` for a run that is not a causal LM run, or bad sampling settings."""
    from selfsup.data.tokenizer import token_lists

    method = _text_run(run_dir, "causal_lm", "generate", device)
    if tokens < 1:
        raise SelfsupError(f"--tokens must be at least 1, got {tokens}")
    if (temperature is not None and temperature <= 0) or (top_k is not None and top_k < 0):
        raise SelfsupError("--temperature must be positive and --top-k 0 or more")
    prompt_ids = [method.vocab.cls] + (token_lists(method.encoder.tokenizer, [prompt])[0] if prompt else [])
    ids = torch.tensor([prompt_ids], device=next(method.parameters()).device)
    out = method.generate(ids, tokens, torch.Generator().manual_seed(seed), temperature, top_k)
    return method.decode(out)[0]


def augment_grid(
    data: str,
    out: str | Path,
    *,
    method: str = "simclr",
    preset: str | None = None,
    images: int = 8,
    seed: int = 0,
    overrides=(),
    cell: int = 64,
) -> Path:
    """Save a PNG grid that shows what a model sees: one row per image, the original first, then
    each view of the augmentation pipeline (``method``'s recipe for this data, or ``preset``, then
    ``augment.*`` overrides). Every tile is scaled (nearest neighbour) to ``cell`` pixels; local
    views keep their relative size in the middle of their tile. Returns the path of the PNG.
    Raises :class:`SelfsupError` for an ``out`` that is not a .png file, or text data."""
    from selfsup.augment import ViewAugmenter
    from selfsup.data.pictures import save_image_grid

    out = Path(out)
    if out.suffix.lower() != ".png":
        raise SelfsupError(f"--out must name a .png file, got {out}")
    if images < 1:
        raise SelfsupError(f"--images must be at least 1, got {images}")
    overrides = ([f"augment.preset={preset}"] if preset else []) + list(overrides)
    config, splits = resolve(method, data, overrides=overrides)
    _need_images(splits, "augment")
    chosen = torch.randperm(len(splits.train), generator=torch.Generator().manual_seed(seed))[:images]
    batch = splits.train.images[chosen]
    views = ViewAugmenter(config.augment)(batch, torch.Generator().manual_seed(seed))
    return save_image_grid([batch.float() / 255] + views, out, cell)


def ablate(
    method: str,
    data: str,
    *,
    drop: list[str] | None = None,
    pairs: list[str] | None = None,
    sweep: str | None = None,
    out: str | Path | None = None,
    epochs: int | None = None,
    labels: list[str] | None = None,
    seeds: int | None = None,
    subset: int | None = None,
    overrides=(),
    progress: bool = True,
) -> dict[str, Any]:
    """Which augmentations make good views: short pretrainings of ``method`` that differ only in
    their augmentations, each scored with kNN and the linear probe (:mod:`selfsup.studies`).

    - ``drop``: the full pipeline, then without each named augmentation (the default study, with
      crop, color, grayscale, blur and flip). A drop that changes nothing in this pipeline is
      reported, not trained.
    - ``pairs``: each augmentation alone and every pair of them, all others off (SimCLR's
      Figure 5, with both branches augmented): a heat map of linear-probe accuracy.
    - ``sweep``: ``KEY=V1,V2,...``, one setting at several values: a curve.

    ``subset``: pretrain each run on a class-balanced, seeded subset of this many training images
    (the same for every run); the probes still draw their labels from the whole training split.
    Writes ``OUT/ablation.json``, ``OUT/report.html`` and, for pairs and sweeps, ``OUT/ablation.png``.
    Returns what ablation.json holds (its ``table``: Markdown) and ``file``, its path; under
    torchrun an empty dict except on rank 0. Raises :class:`SelfsupError` for an unknown
    augmentation, a malformed sweep, more than one study, text data, or a ``subset`` not between
    the number of classes and the training split's size."""
    from selfsup.studies import ablate as run_study

    flags = ABLATE.flags(locals())
    out = Path(out) if out is not None else Path("runs") / f"ablate-{method}-{_data_name(data)}"
    return run_study(
        method,
        data,
        drop=drop,
        pairs=pairs,
        sweep=sweep,
        out=out,
        labels=labels,
        seeds=seeds,
        subset=subset,
        overrides=overrides,
        flags=flags,
        progress=progress,
    )


def demo(out: str | Path = "runs/demo", *, overrides=(), progress: bool = True) -> dict[str, Any]:
    """Pretrain SimCLR on the built-in digits, then evaluate with 1, 5 and 10 labels per class.
    ``overrides`` (``key=value``) change the recipe.

    Returns the evaluation (``selfsup.evaluate.format_table`` makes its table: SSL + linear,
    SSL + kNN, from scratch, raw pixels; mean ± std over seeds) plus ``wall_seconds``,
    ``peak_memory_mb``, ``pretrain_seconds``, ``pretrain_epochs`` and ``run_dir``; under torchrun
    an empty dict except on rank 0.
    """
    started = time.perf_counter()
    result = pretrain(
        "simclr", "digits", out=out, overrides=overrides, overwrite=True, progress=progress, report=False
    )  # the evaluation below writes it, with the table
    evaluation = evaluate(result.run_dir, progress=progress)
    if not evaluation:  # a torchrun process other than rank 0
        return {}
    return {
        **evaluation,
        "wall_seconds": time.perf_counter() - started,
        "peak_memory_mb": peak_memory_mb(),
        "pretrain_seconds": result.seconds,
        "pretrain_epochs": result.epochs,
        "run_dir": result.run_dir,
    }


def export(run_dir: str | Path, *, format: str = "safetensors", out: str | Path | None = None) -> dict:
    """Write a run's encoder as ``format`` (safetensors, torchvision, timm, torchscript, onnx, hf)
    for use elsewhere; returns the note written beside it (path, how to load it, the checked
    difference); see :func:`selfsup.models.export.export_encoder`, whose errors it raises."""
    from selfsup.models.export import export_encoder

    return export_encoder(run_dir, format, out)


def methods() -> list[dict[str, str]]:
    """The available methods with their family and paper: one dict (method, family, paper) each."""
    return [{"method": m.name, "family": m.family, "paper": m.paper} for m in METHODS.values()]
