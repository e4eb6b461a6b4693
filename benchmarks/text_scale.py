"""A text corpus larger than memory would hold as Python strings: streamed into the corpus store,
the tokenizer trained on a bounded sample, the token ids written to the token store.

    python benchmarks/text_scale.py [--gigabytes 1.0] [--tokenizer bpe]

Synthesises corpora of about ``--gigabytes`` (each) of UTF-8 text in a temporary folder, from the shared
tiny-shakespeare (runs of 4 lines) and AG News (title and description), shuffled and repeated, one
document per line. Then, in a fresh process: ``load_data`` (the corpus store), the tokenizer
(``text.tokenizer_sample`` characters), and the packed token ids of the training split
(``text.pack=true``, blocks of 256, as a causal LM trains): seconds, MB/s, tokens/s, and the
process's peak RSS and ``RssAnon`` after each stage, beside the corpus's size. For corpora up to
0.2 GB, also the way selfsup read corpora before the stores (the file as one string, a list of
documents, the tokenizer trained on all, int64 token blocks in memory), in its own process.

Saves ``benchmarks/results/text_scale_cpu.json`` with the machine.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"

STAGES = """
import re, sys, time, json
def status():
    text = open("/proc/self/status").read()
    return {k: int(re.search(k + r":\\s+(\\d+)", text).group(1)) // 1024 for k in ("VmHWM", "RssAnon")}
from selfsup.data import load_data
from selfsup.data.tokens import packed_ids
from selfsup.methods.recipes import build_config
from selfsup.train.modality import train_text_tokenizer
out = {}
started = time.perf_counter()
splits = load_data(sys.argv[1])
count = len(splits.train) + len(splits.test)
out["store"] = {"seconds": time.perf_counter() - started, "documents": count, **status()}
overrides = [f"text.tokenizer={sys.argv[2]}", "text.pack=true"]
config = build_config("causal_lm", small_images=False, overrides=overrides)
started = time.perf_counter()
tokenizer = train_text_tokenizer(config, splits.train.texts)
out["tokenizer"] = {"seconds": time.perf_counter() - started, "vocab": tokenizer.get_vocab_size(),
                    "sample_characters": config.text.tokenizer_sample, **status()}
started = time.perf_counter()
blocks = packed_ids(tokenizer, splits.train.texts, 256)
seconds = time.perf_counter() - started
out["tokens"] = {"seconds": seconds, "tokens": blocks.numel(), "dtype": str(blocks.dtype), **status()}
print(json.dumps(out))
"""

WHOLE = """
import re, sys, json
def status():
    text = open("/proc/self/status").read()
    return {k: int(re.search(k + r":\\s+(\\d+)", text).group(1)) // 1024 for k in ("VmHWM", "RssAnon")}
from selfsup.data.tokenizer import pack_documents, train_tokenizer
texts = open(sys.argv[1], encoding="utf-8").read().split("\\n")  # as selfsup read corpora before
tokenizer = train_tokenizer(texts, sys.argv[2], 8000)
blocks = pack_documents(tokenizer, texts, 256)
print(json.dumps({"tokens": blocks.numel(), **status()}))
"""
WHOLE_UP_TO_GB = 0.2  # reading whole is measured on the small corpora only (it needs ~25x the text)


def make_corpus(path: Path, gigabytes: float) -> int:
    lines = (SHARED / "tinyshakespeare.txt").read_text().split("\n")
    documents = [" ".join(lines[i : i + 4]).strip() for i in range(0, len(lines), 4)]
    with open(SHARED / "ag_news_test.csv", newline="") as handle:
        documents += [f"{row[1]} {row[2]}".replace("\\", " ") for row in csv.reader(handle)]
    documents = [d for d in documents if d]
    rng = random.Random(0)
    target, written = int(gigabytes * 2**30), 0
    with open(path, "w") as out:
        while written < target:
            rng.shuffle(documents)
            block = "\n".join(documents) + "\n"
            out.write(block)
            written += len(block.encode())
    return written


def measure(gigabytes: float, tokenizer: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="text-scale-") as tmp:
        corpus = Path(tmp) / "corpus.txt"
        started = time.perf_counter()
        size = make_corpus(corpus, gigabytes)
        synthesis = time.perf_counter() - started
        env = {**os.environ, "SELFSUP_CACHE_DIR": str(Path(tmp) / "cache")}
        command = [sys.executable, "-c", STAGES, str(corpus), tokenizer]
        run = subprocess.run(command, env=env, capture_output=True, text=True)
        if run.returncode:
            raise SystemExit(run.stderr[-3000:])
        stages = json.loads(run.stdout.strip().splitlines()[-1])
        if gigabytes <= WHOLE_UP_TO_GB:
            whole = subprocess.run(
                [sys.executable, "-c", WHOLE, str(corpus), tokenizer], env=env, capture_output=True, text=True
            )
            if whole.returncode:
                raise SystemExit(whole.stderr[-3000:])
            stages["read_whole"] = json.loads(whole.stdout.strip().splitlines()[-1])
        store = sum(p.stat().st_size for p in (Path(tmp) / "cache").rglob("*") if p.is_file())
    megabytes = size / 2**20
    stages["store"]["mb_per_s"] = megabytes / stages["store"]["seconds"]
    stages["tokens"]["tokens_per_s"] = stages["tokens"]["tokens"] / stages["tokens"]["seconds"]
    return {"corpus_mb": megabytes, "synthesis_s": synthesis, "stores_mb": store / 2**20, **stages}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gigabytes", default="0.1,1.0", help="corpus sizes, comma-separated")
    parser.add_argument("--tokenizer", default="bpe")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "text_scale_cpu.json"))
    args = parser.parse_args()
    from selfsup.train.machine import machine_info

    rows = []
    for gigabytes in (float(g) for g in args.gigabytes.split(",")):
        rows.append(measure(gigabytes, args.tokenizer))
        print(json.dumps(rows[-1]), flush=True)
    result = {
        "machine": machine_info(),
        "what": "a synthetic one-document-per-line corpus streamed into the corpus store, a tokenizer "
        "trained on a sample, packed token ids written to the token store; peak RSS (VmHWM) and RssAnon "
        "in MB after each stage, in one process per corpus",
        "tokenizer": args.tokenizer,
        "rows": rows,
    }
    print(json.dumps(result, indent=2))
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
