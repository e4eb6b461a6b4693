"""Domain-adaptive pretraining of a Hugging Face checkpoint with `--backbone hf:PATH`, on AG News.

No real checkpoint can be downloaded here, so the "general" checkpoint is made locally and is
small: a BERT (4 blocks of 128, 2 heads, WordPiece 8,000 trained on tiny-shakespeare) pretrained
with selfsup's masked LM on tiny-shakespeare (`--backbone hf:` from its random initialisation),
then written with `selfsup export --format hf`. That checkpoint is then

  - evaluated as it is on AG News, and
  - continued with selfsup's `mlm` on the 6,080 AG News training texts (labels hidden; 40 epochs,
    as the mlm recipe needs to leave BERT's frequent-token plateau on AG News), then evaluated the
    same way,

each with kNN, the linear probe and fine-tuning at 10 and 100 labels per class (3 seeds, the
mlm recipe's fine-tuning settings), side by side with TF-IDF + logistic regression on the same
labelled subsets. It shows the mechanism (continued pretraining on the user's domain, the
checkpoint's own tokenizer, an export that loads in transformers), not a published number.

    python benchmarks/hf_continued_pretraining.py [--general-epochs 10] [--domain-epochs 40]

Writes benchmarks/results/hf_continued_pretraining.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from machine import machine_info

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT.parent / "shared" / "datasets"
AG_NEWS = DATASETS / "ag_news_test.csv"
SHAKESPEARE = DATASETS / "tinyshakespeare.txt"
SIZE = dict(hidden=128, layers=4, heads=2, vocab=8000, positions=128)
TRAINING = ["text.max_length=128", "optim.lr=3e-4", "optim.warmup_epochs=1", "train.batch_size=64"]


def random_bert(folder: Path) -> Path:
    """A randomly initialised BERT masked LM with a WordPiece tokenizer trained on tiny-shakespeare."""
    sys.path.insert(0, str(ROOT / "tests"))
    from hf_tiny import tiny_bert

    lines = SHAKESPEARE.read_text().splitlines()
    return tiny_bert(folder, lines, **SIZE, unused=False)


def pretrain(checkpoint: Path, data: Path, epochs: int, out: Path) -> dict:
    from selfsup import api

    started = time.perf_counter()
    result = api.pretrain(
        "mlm",
        str(data),
        out=out,
        backbone=f"hf:{checkpoint}",
        epochs=epochs,
        overrides=TRAINING,
        overwrite=True,
        progress=False,
        report=False,
    )
    return {
        "run_dir": result.run_dir,
        "seconds": time.perf_counter() - started,
        "final_loss": result.final_loss,
        "test_metrics": result.test_metrics,
    }


def evaluate(encoder, splits) -> list[dict]:
    import torch

    from selfsup.evaluate import evaluate_encoder
    from selfsup.methods.recipes import build_config

    config = build_config("mlm", small_images=False, overrides=["eval.protocols=[knn,linear,finetune,tfidf]"])
    scores = evaluate_encoder(encoder, splits, config.eval, torch.device("cpu"), progress=False)
    return scores["results"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--general-epochs", type=int, default=10)
    parser.add_argument("--domain-epochs", type=int, default=40)
    args = parser.parse_args()
    for path in (AG_NEWS, SHAKESPEARE):
        if not path.exists():
            raise SystemExit(f"{path} is absent (see ../shared/datasets/README.md)")
    from selfsup.data import load_data
    from selfsup.models.encoder import load_encoder
    from selfsup.models.export import export_encoder
    from selfsup.models.hf_text import HFTextEncoder

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        general = pretrain(random_bert(tmp / "random"), SHAKESPEARE, args.general_epochs, tmp / "general-run")
        checkpoint = Path(export_encoder(general["run_dir"], "hf", tmp / "general")["path"])
        domain = pretrain(checkpoint, AG_NEWS, args.domain_epochs, tmp / "domain-run")
        splits = load_data(str(AG_NEWS))
        started = time.perf_counter()
        rows = {
            "checkpoint as it is": evaluate(HFTextEncoder.from_checkpoint(checkpoint, False, 128), splits),
            "continued on AG News (selfsup mlm)": evaluate(load_encoder(domain["run_dir"]), splits),
        }
        eval_seconds = time.perf_counter() - started
    for part in (general, domain):
        part["run_dir"] = str(part["run_dir"])
    table = format_table(rows)
    print(table)
    result = {
        "machine": machine_info(),
        "compared": "one local BERT checkpoint (pretrained on tiny-shakespeare with selfsup mlm), "
        "evaluated as it is and after continued mlm pretraining on AG News's training texts",
        "model": SIZE,
        "training_overrides": TRAINING,
        "general_pretraining": {"data": "tinyshakespeare.txt", "epochs": args.general_epochs, **general},
        "domain_pretraining": {
            "data": "ag_news_test.csv (train split)",
            "epochs": args.domain_epochs,
            **domain,
        },
        "evaluation_seconds": eval_seconds,
        "results": rows,
        "table": table,
    }
    out = ROOT / "benchmarks" / "results" / "hf_continued_pretraining.json"
    out.write_text(json.dumps(result, indent=2, default=str))
    print(f"written to {out}")


def format_table(rows: dict[str, list[dict]]) -> str:
    """Markdown: one row per model and protocol, mean ± std over seeds per label budget."""
    budgets = sorted({r["labels"] for results in rows.values() for r in results}, key=str)
    lines = ["| model | protocol | " + " | ".join(budgets) + " |", "|---|---|" + "---|" * len(budgets)]
    for model, results in rows.items():
        for protocol in ("knn", "linear", "finetune", "tfidf"):
            cells = []
            for budget in budgets:
                hit = [r for r in results if r["protocol"] == protocol and r["labels"] == budget]
                cells.append(f"{hit[0]['mean']:.3f} ± {hit[0]['std']:.3f}" if hit else "")
            if any(cells):
                lines.append(f"| {model} | {protocol} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
