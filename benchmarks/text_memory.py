"""Peak memory of text runs as a user starts them: ``selfsup pretrain`` and ``selfsup evaluate``.

    python benchmarks/text_memory.py [--methods mlm,bart,causal_lm,simcse,electra,hf_bert]
        [--data ag_news] [--max-steps N] [--no-evaluate] [--before REV] [--out text_memory.json]

For each method, the real command (``python -m selfsup``, ``train.precision=auto``) in its own
process with a fresh data and speed cache, twice, one after the other: with the code of git
revision ``--before`` (default :data:`BEFORE`, unpacked with ``git archive`` and put first on
``PYTHONPATH``) and with this tree's. One epoch of ``--data`` (the AG News test split by default;
``--max-steps`` bounds it: ``train.max_steps``), then the run's ``selfsup evaluate`` (kNN and
linear at 10 labels a class). First, the memory of a fresh process after importing torch,
selfsup's api, and the api with what it imported before (``--imports-only``: only that). Each
process's peak RSS (the kernel's ``ru_maxrss``), peak ``RssAnon`` (sampled every 50 ms from
``/proc/PID/status``), wall seconds, and the precision the run chose with its step times (bf16's
memory differs from fp32's). ``hf_bert`` continues a randomly initialised BERT (4×128, built
offline as the tests build theirs) with ``--backbone hf:``.

Goals (issue 33): one MLM epoch on AG News ≤ 1.2 GB peak RSS, its evaluation ≤ 1.0 GB.
Writes ``benchmarks/results/text_memory.json`` with the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT.parent / "shared" / "datasets"
DATA = {"ag_news": DATASETS / "ag_news_test.csv"}
METHODS = ["mlm", "bart", "causal_lm", "simcse", "electra", "hf_bert"]
BEFORE = "a685b53"  # the code before bounded shapes and token-budgeted feature batches
GOALS_MB = {"pretrain": 1200, "evaluate": 1000}


def measured(command: list[str]) -> dict:
    """Run ``command`` as this process's only child: wall seconds, peak RSS (the kernel's
    ``ru_maxrss`` of the children, which is this one's alone: :func:`run_isolated` starts a fresh
    process for each) and the peak RssAnon sampled every 50 ms (MB)."""
    import resource

    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak_anon = [0]

    def sample() -> None:
        path = Path(f"/proc/{process.pid}/status")
        while process.poll() is None:
            try:
                found = re.search(r"RssAnon:\s+(\d+)", path.read_text())
            except OSError:
                break
            if found:
                peak_anon[0] = max(peak_anon[0], int(found.group(1)) // 1024)
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, err = process.communicate()
    sampler.join()
    if process.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{err[-3000:]}")
    return {
        "seconds": time.perf_counter() - started,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        "peak_rss_anon_mb": peak_anon[0],
    }


def run_isolated(command: list[str], env: dict) -> dict:
    """:func:`measured` in a fresh Python process (with ``env``), so that its children's peak is
    this command's alone."""
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); from text_memory import measured; "
        "print(json.dumps(measured(json.loads(sys.argv[2]))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(ROOT / "benchmarks"), json.dumps(command)],
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise SystemExit(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


IMPORTS = {
    "torch": "import torch",
    "selfsup.api": "import selfsup.api",
    "selfsup.api + torchvision + sklearn.model_selection (imported by it before)": (
        "import selfsup.api, torchvision, sklearn.model_selection"
    ),
}


def import_memory() -> dict:
    """RSS and RssAnon (MB) of a fresh process after each of :data:`IMPORTS`."""
    out = {}
    for name, statement in IMPORTS.items():
        code = (
            f"{statement}; import re; s = open('/proc/self/status').read(); "
            "print(*(int(re.search(k + r':\\s+(\\d+)', s).group(1)) // 1024 for k in ('VmRSS', 'RssAnon')))"
        )
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        rss, anon = map(int, done.stdout.split())
        out[name] = {"rss_mb": rss, "rss_anon_mb": anon}
        print("import", name, rss, anon, flush=True)
    return out


def hf_bert(folder: Path) -> Path:
    """A randomly initialised BERT masked LM (4×128) with a WordPiece tokenizer trained on AG News."""
    sys.path.insert(0, str(ROOT / "tests"))
    import csv

    from hf_tiny import tiny_bert

    with open(DATA["ag_news"], newline="") as handle:
        texts = [f"{row[1]} {row[2]}" for row in csv.reader(handle)]
    return tiny_bert(folder, texts, hidden=128, layers=4, heads=2, vocab=8000, positions=128, unused=False)


def sources(before: str, tmp: Path) -> dict[str, Path]:
    """The ``src`` folders compared: revision ``before`` (unpacked with ``git archive``) and this
    working tree."""
    from revision import unpacked

    this_tree = {"after (this tree)": ROOT / "src"}
    if before == "none":
        return this_tree
    folder = tmp / "before"
    folder.mkdir()
    return {f"before ({before})": unpacked(before, folder, "src") / "src", **this_tree}


def measure(method: str, data: Path, max_steps: int, evaluate: bool, tmp: Path, code: dict) -> dict:
    from revision import head

    selfsup = [sys.executable, "-m", "selfsup"]
    extra = [f"train.max_steps={max_steps}"] if max_steps else []
    if method == "hf_bert":
        extra += [f"--backbone=hf:{hf_bert(tmp / 'bert')}", "text.max_length=128"]
    out = {}
    for name, src in code.items():
        env = {**os.environ, "SELFSUP_CACHE_DIR": str(tmp / f"cache-{len(out)}"), "SELFSUP_REPORT": "0"}
        env["PYTHONPATH"] = str(src)
        env.pop("SELFSUP_MMAP_THRESHOLD", None)
        run = tmp / f"run-{method}-{len(out)}"
        base = "mlm" if method == "hf_bert" else method
        command = [*selfsup, "pretrain", "--method", base, "--data", str(data), "--epochs", "1"]
        command += ["--out", str(run), "--quiet", *[e for e in extra if e.startswith("--")]]
        command += [e for e in extra if not e.startswith("--")]
        result = {"pretrain": run_isolated(command, env)}
        history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        result["pretrain"]["epoch_seconds"] = sum(r["seconds"] for r in history)
        result["pretrain"]["speed"] = json.loads((run / "run.json").read_text()).get("speed")
        if evaluate:
            command = [*selfsup, "evaluate", str(run), "--labels", "10/class", "--protocol", "knn,linear"]
            result["evaluate"] = run_isolated(command + ["--seeds", "1", "--quiet"], env)
        result["code"] = name if src != ROOT / "src" else f"this tree at {head('src')}"
        out[name] = result
        print(method, name, json.dumps(result), flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--data", default="ag_news", help="ag_news or a corpus's path")
    parser.add_argument("--max-steps", type=int, default=0, help="train.max_steps (0: the whole epoch)")
    parser.add_argument("--no-evaluate", action="store_true")
    parser.add_argument("--out", default="text_memory.json")
    parser.add_argument(
        "--before", default=BEFORE, help="the git revision compared with this tree (none: this tree only)"
    )
    parser.add_argument("--imports-only", action="store_true", help="only the memory of the imports")
    args = parser.parse_args()
    from machine import machine_info

    data = DATA.get(args.data, Path(args.data))
    path = ROOT / "benchmarks" / "results" / args.out
    result = json.loads(path.read_text()) if path.exists() else {}
    if "SELFSUP_MMAP_THRESHOLD" in result.get("compared", ""):  # kept: the allocation policy's figures
        result["allocation_policy_at_a685b53"] = {
            "compared": result["compared"],
            "note": "measured while other jobs shared the 2 cores; fp32 won the precision measurement",
            "methods": result.pop("methods", {}),
        }
    result |= {
        "machine": machine_info(),
        "data": str(data.name),
        "max_steps": args.max_steps,
        "goals_mb": GOALS_MB,
    }
    if args.before != "none":
        result["compared"] = (
            f"peak RSS of the real commands (train.precision=auto, fresh caches) with the code of "
            f"{args.before} and of this tree, one after the other"
        )
    result["imports"] = import_memory()
    path.write_text(json.dumps(result, indent=1) + "\n")
    if args.imports_only:
        print(f"wrote {path}")
        return
    with tempfile.TemporaryDirectory(prefix="text-memory-") as tmp:
        code = sources(args.before, Path(tmp))
        for method in args.methods.split(","):
            result.setdefault("methods", {}).setdefault(method, {}).update(  # --before none keeps "before"
                measure(method, data, args.max_steps, not args.no_evaluate, Path(tmp), code)
            )
            path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
