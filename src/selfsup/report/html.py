"""A run's report: one self-contained HTML page (pictures embedded as PNG data) that opens in any
browser without a server, and a page comparing several runs.

What a report shows, each part where the run has what it needs: the configuration, data, machine,
wall time and peak memory (``run.json``); curves over epochs (``metrics.jsonl``); the evaluation
table (``eval.json``) and the pretext task's own test metrics; a 2-D map of test embeddings (t-SNE,
or UMAP when ``umap-learn`` is installed); nearest-neighbour retrieval; the augmented views; the
cross-correlation matrix of the methods that offer it (Barlow Twins, VICReg); and the method's own
pictures and examples. The run is read through :mod:`selfsup.runs`.
"""

from __future__ import annotations

from pathlib import Path

from selfsup import runs
from selfsup.report.figures import curves_figure
from selfsup.report.page import document, esc, img, table, write_page
from selfsup.report.sections import data_sections, method_pictures
from selfsup.report.tables import evaluation_rows, markdown

REPORT_FILE = "report.html"


def write_report(run_dir: str | Path, device: str | None = None) -> Path:
    """Write ``RUN_DIR/report.html`` from what the run directory holds; returns its path. The parts
    that need the encoder run on ``device`` (default: the run's ``train.device``). Raises
    :class:`SelfsupError` where ``run_dir`` is not a run directory."""
    from selfsup.train.device import resolve_device

    run_dir = runs.check_run_dir(run_dir)
    config = runs.load_run_config(run_dir)
    run = runs.read_record(run_dir, runs.RUN_FILE) or {}
    history = runs.read_history(run_dir)
    evaluation = runs.read_record(run_dir, runs.EVAL_FILE)
    title = f"{config.method_name} on {run.get('data', config.data.spec)}"
    body = [
        f"<h1>selfsup: {esc(title)}</h1>",
        table(None, _overview(config, run, history, evaluation), numbers=False),
        "<details><summary>configuration (config.yaml)</summary>"
        f"<pre>{esc((run_dir / runs.CONFIG_FILE).read_text())}</pre></details>",
    ]
    if history:
        body.append(
            f"<h2>Training curves</h2>{img(curves_figure({'run': history}), 'training curves', plot=True)}"
            "<p class=caption>The collapse monitors are measured on the last batch of each epoch; the "
            "dashed line is 1/√D, the std of points spread evenly over the sphere (0 = collapse).</p>"
        )
    body += _evaluation_sections(run_dir, evaluation, runs.read_record(run_dir, runs.TEST_METRICS_FILE))
    if (run_dir / "encoder.safetensors").exists():
        torch_device = resolve_device(device or config.train.device)
        encoder = runs.load_encoder(run_dir, torch_device)
        body += data_sections(run_dir, config, encoder, torch_device)
    body += method_pictures(run_dir)
    return write_page(run_dir / REPORT_FILE, document(title, body))


def _overview(config, run: dict, history: list[dict], evaluation: dict | None) -> list[list]:
    """The rows of the table that opens the report: method, data, model, training and machine."""
    from selfsup.methods import get_method

    info = get_method(config.method_name)
    optim = config.optim
    rows = [
        ["method", f"{info.name} — {info.family}; {info.paper}"],
        ["data", run.get("data", config.data.spec)],
        ["training / test items", f"{run.get('train_items', '?')} / {run.get('test_items', '?')}"],
        ["backbone", config.model.backbone],
        ["epochs done / planned", f"{history[-1]['epoch'] if history else 0} / {config.train.epochs}"],
        ["batch size (global)", config.train.batch_size],
        ["optimiser", f"{optim.name}, lr {optim.lr} ({optim.lr_scaling} scaling), {optim.schedule} schedule"],
    ]
    if run:
        machine = run.get("machine", {})
        gpu = f", {machine['gpu']}" if machine.get("gpu") else ""
        rows += [
            ["pretraining wall time", f"{run['seconds']:.0f} s"],
            ["peak memory", f"{run['peak_memory_mb']:.0f} MB"],
            [
                "device",
                f"{run.get('device')} ({run.get('precision')}), {run.get('processes', 1)} process(es)",
            ],
            [
                "machine",
                f"{machine.get('cpu')}, {machine.get('cpu_count')} CPUs{gpu}; torch {machine.get('torch')}",
            ],
            ["finished", run.get("finished", "")],
        ]
    if evaluation:
        rows.append(["evaluation wall time", f"{evaluation.get('seconds', 0):.0f} s"])
    return rows


def _evaluation_sections(run_dir: Path, evaluation: dict | None, test_metrics: dict | None) -> list[str]:
    """The few-label table (or how to make it) and the pretext task's metrics on the test split."""
    if evaluation:
        header, rows = evaluation_rows(evaluation)
        seeds = evaluation["results"][0]["seeds"] if evaluation["results"] else 0
        parts = [
            f"<h2>Evaluation</h2>{table(header, rows)}<p class=caption>Test accuracy, mean ± std over "
            f"{seeds} seeded, class-balanced labelled subsets. {esc(evaluation.get('note', ''))}</p>"
        ]
    else:
        parts = [
            "<h2>Evaluation</h2><p>Not evaluated yet: <code>selfsup evaluate "
            f"{esc(run_dir)}</code> adds the few-label table here.</p>"
        ]
    if test_metrics:
        rows = [[k.replace("_", " "), "—" if v is None else f"{v:.4g}"] for k, v in test_metrics.items()]
        parts.append("<h2>Pretext task on the test split</h2>" + table(["metric", "value"], rows))
    return parts


def comparison(run_dirs: list[str | Path], out: str | Path) -> tuple[Path, str]:
    """A page comparing runs side by side (accuracy per label budget, wall time, curves overlaid) at
    ``out``, and the same table as Markdown text. Raises :class:`SelfsupError` where one of
    ``run_dirs`` is not a run directory."""
    from selfsup.evaluate.harness import PROTOCOLS, budget_column, result_grid

    loaded = []
    for run_dir in map(runs.check_run_dir, run_dirs):
        run = runs.read_record(run_dir, runs.RUN_FILE) or {}
        evaluation = runs.read_record(run_dir, runs.EVAL_FILE) or {"results": []}
        loaded.append((runs.load_run_config(run_dir), run, evaluation, runs.read_history(run_dir)))
    names = _short_names([Path(r) for r in run_dirs])
    columns = list(dict.fromkeys((x["protocol"], budget_column(x)) for r in loaded for x in r[2]["results"]))
    header = ["run", "method", "data", "epochs", "wall s"] + [
        f"{PROTOCOLS.get(p, p)} {b}" for p, b in columns
    ]
    rows = []
    for name, (config, run, evaluation, history) in zip(names, loaded):
        cell = result_grid(evaluation["results"])[2]
        wall = f"{run['seconds']:.0f}" if "seconds" in run else "—"
        epochs = history[-1]["epoch"] if history else 0
        rows.append(
            [name, config.method_name, run.get("data", config.data.spec), epochs, wall]
            + [cell.get(c, "—") for c in columns]
        )
    body = [
        "<h1>selfsup: comparison of runs</h1>",
        table(header, rows),
        "<p class=caption>Test accuracy, mean ± std over the seeded labelled subsets of each run's "
        "evaluation; wall time of the pretraining.</p>",
    ]
    histories = {name: r[3] for name, r in zip(names, loaded) if r[3]}
    if histories:
        body.append(
            f"<h2>Curves</h2>{img(curves_figure(histories, relative_loss=True), 'curves', plot=True)}"
            "<p class=caption>Losses of different methods have different scales: each is shown relative "
            "to its first epoch.</p>"
        )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_page(out, document("selfsup comparison", body))
    return out, markdown(header, rows)


def _short_names(paths: list[Path]) -> list[str]:
    """The runs' directory names, made unique with their parents where two share a name."""
    names = [p.name for p in paths]
    return [str(Path(p.parent.name) / p.name) if names.count(p.name) > 1 else p.name for p in paths]
