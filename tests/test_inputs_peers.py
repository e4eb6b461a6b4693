"""More inputs that trip real users, shaped like the bug reports filed against peer tools
(transformers, tokenizers, datasets, timm, Lightning, torchvision): each is read as the user means
it, or refused with a one-line error. One section per kind:

1. tables read as the file means them (quotes, delimiters, rows of another width);
2. words stay words with the default tokenizer (accents and combining marks);
3. a run whose tokens are mostly unknown never trains silently;
4. exports take the images the run was trained on (every format, every note);
5. Hugging Face exports work with the standard code (length, padding, special tokens);
6. a write that fails leaves the run as it was and says why (every file selfsup writes);
7. a valid large image is read up to a limit the user sets, and named as too large beyond it;
8. a store follows its files (contents changed with the times kept).
"""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import random
import resource
import shutil
import socket
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import make_image_folder, write_image
from selfsup import api, atomic
from selfsup.data import load_data
from selfsup.data.decode import decode_image
from selfsup.data.tokenizer import train_tokenizer
from selfsup.data.tokens import check_known_tokens
from selfsup.errors import ConfigError, DataError
from test_cli import assert_one_line_error, run_cli

SRC = Path(__file__).resolve().parents[1] / "src"


def corpus(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    words = "the cat sat on a mat while stocks fell and rain came over the hills".split()
    return [" ".join(rng.choice(words) for _ in range(rng.randint(4, 12))) for _ in range(count)]


def documents(splits) -> list[str]:
    texts = list(splits.train.texts) + (list(splits.test.texts) if splits.test is not None else [])
    return texts


def pretrain(method: str, data, out: Path, overrides: list[str], epochs: int = 1, **options):
    """A short, quiet run (no progress, no report)."""
    return api.pretrain(
        method,
        str(data),
        out=out,
        epochs=epochs,
        overrides=overrides,
        progress=False,
        report=False,
        **options,
    )


# ---- 1. tables read as the file means them -------------------------------------------------------


def reviews_tsv(path: Path) -> Path:
    """The issue's file: a TSV without quoting whose review 50 starts with a quote and review 120
    holds a quoted word."""
    rows = ["text\tlabel"]
    for i in range(200):
        text = f"review {i} was fine"
        if i == 50:
            text = '"Wow, review 50 was dull and slow'
        if i == 120:
            text = 'she said "fine" about review 120'
        rows.append(f"{text}\t{('good', 'bad')[i % 2]}")
    path.write_text("\n".join(rows) + "\n")
    return path


def test_quotes_in_a_tsv_without_quoting_are_text(tmp_path):
    texts = documents(load_data(reviews_tsv(tmp_path / "reviews.tsv")))
    assert len(texts) == 200
    assert '"Wow, review 50 was dull and slow' in texts
    assert 'she said "fine" about review 120' in texts
    assert not any("\t" in t or "\n" in t for t in texts)


def test_a_quoted_csv_keeps_its_line_breaks_delimiters_and_doubled_quotes(tmp_path):
    path = tmp_path / "quoted.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        for i in range(40):
            writer.writerow([f'line one {i}\nsaid "yes, sir"' if i % 5 == 0 else f"plain {i}", i % 2])
    texts = documents(load_data(path))
    assert len(texts) == 40
    assert 'line one 0\nsaid "yes, sir"' in texts


def test_a_tsv_written_with_quoting_is_read_with_it(tmp_path):
    path = tmp_path / "quoted.tsv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t")
        writer.writerow(["text", "label"])
        for i in range(30):
            writer.writerow([f'tab\there "{i}"' if i % 3 == 0 else f"plain {i}", i % 2])
    texts = documents(load_data(path))
    assert len(texts) == 30 and 'tab\there "0"' in texts


@pytest.mark.parametrize(
    "body, options, lines",
    [
        ('text,label\n"Wow, dull,1\nok fine,0\nanother,1\n', {}, "line 2"),  # a quote never closed
        ("text\tlabel\ngood one\t1\nno label here\nbad one\t0\n", {}, "line 3"),  # a short row
        ('text\tlabel\n"Wow dull\t1\nok\t0\nsaid "fine"\t1\n', {"quoting": "true"}, "line 2"),  # forced
    ],
)
def test_rows_of_another_width_are_named_by_their_lines_never_merged(tmp_path, body, options, lines):
    path = tmp_path / ("t.tsv" if "\t" in body else "t.csv")
    path.write_text(body)
    with pytest.raises(DataError, match=rf"{lines}\b"):
        load_data(path, text_options=options)


def test_data_quoting_false_reads_quotes_as_text_and_bad_values_are_refused(tmp_path):
    path = tmp_path / "q.csv"
    path.write_text('text,label\n"quoted",1\n"another",0\n"third",1\n"fourth",0\n')
    texts = documents(load_data(path, text_options={"quoting": "false"}))
    assert '"quoted"' in texts
    with pytest.raises(DataError, match="data.quoting must be auto, true or false"):
        load_data(path, text_options={"quoting": "maybe"})


def test_a_field_longer_than_pythons_csv_limit_is_read(tmp_path):
    path = tmp_path / "long.csv"
    long = "word " * 40_000  # 200,000 characters: over csv's 131,072
    rows = [["text", "label"]] + [[long if i == 0 else f"short {i}", i % 2] for i in range(10)]
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    assert max(len(t) for t in documents(load_data(path))) == len(long.strip())


def test_image_lists_are_read_as_tables_too(tmp_path):
    for name in ("a, b.png", "c.png"):
        write_image(tmp_path / name)
    good = tmp_path / "list.csv"
    with open(good, "w", newline="") as handle:
        csv.writer(handle).writerows([["path", "label"], ["a, b.png", "cat"], ["c.png", "dog"]] * 1)
    assert sorted(load_data(good).train.names) == ["a, b.png", "c.png"]
    short = tmp_path / "short.csv"
    short.write_text("path,label,split\na, b.png,cat,train\nc.png,dog\n")
    with pytest.raises(DataError, match=r"line 2 has 4 fields"):
        load_data(short)


# ---- 2. words stay words with the default tokenizer ----------------------------------------------

PAIRS = [("hacia", "hacía"), ("papa", "papá"), ("कुल", "कल"), ("resume", "résumé")]


def test_lower_casing_keeps_the_marks_that_tell_words_apart():
    words = [w for pair in PAIRS for w in pair]
    tokenizer = train_tokenizer([" ".join(words)] * 20, "wordpiece", 200, lowercase=True)
    for plain, marked in PAIRS:
        assert tokenizer.encode(plain).ids != tokenizer.encode(marked).ids, (plain, marked)
    composed, decomposed = "caf\u00e9", "cafe\u0301"  # é as one character or as e + a combining accent
    assert tokenizer.encode(composed).ids == tokenizer.encode(decomposed).ids


@pytest.mark.parametrize("kind", ["wordpiece", "char"])
def test_accents_are_stripped_only_when_asked(kind):
    words = [w for pair in PAIRS for w in pair]
    tokenizer = train_tokenizer([" ".join(words)] * 20, kind, 200, lowercase=True, strip_accents=True)
    for plain, marked in PAIRS[:2]:
        assert tokenizer.encode(plain).ids == tokenizer.encode(marked).ids


def test_strip_accents_with_the_lossless_tokenizer_is_refused():
    with pytest.raises(ConfigError, match="strip_accents does not apply to text.tokenizer=bpe"):
        train_tokenizer(["a b"], "bpe", 100, strip_accents=True)


# ---- 3. a run whose tokens are mostly unknown never trains silently ------------------------------


def proteins(count: int) -> list[str]:
    rng = random.Random(0)
    return [
        "".join(rng.choice("ACDEFGHIKLMNPQRSTVWY") for _ in range(rng.randint(120, 180)))
        for _ in range(count)
    ]


def test_words_longer_than_wordpieces_limit_are_split_into_pieces():
    texts = proteins(40)
    tokenizer = train_tokenizer(texts, "wordpiece", 500)
    ids = tokenizer.encode(texts[0]).ids
    assert 1 not in ids and len(ids) > 10  # no [UNK]: pieces
    assert check_known_tokens(tokenizer, texts, 0.1, "") == 0.0


def test_a_masked_lm_on_protein_sequences_learns(tmp_path):
    path = tmp_path / "proteins.txt"
    path.write_text("\n".join(proteins(64)) + "\n")
    result = pretrain(
        "mlm",
        path,
        tmp_path / "run",
        ["model.width=32", "model.depth=1", "train.batch_size=16", "text.max_length=48"],
    )
    assert result.final_loss > 0.5
    assert result.test_metrics["masked_token_accuracy"] is not None


def test_mostly_unknown_tokens_stop_the_run_before_training(tmp_path, capsys):
    from hf_tiny import tiny_bert

    checkpoint = tiny_bert(tmp_path / "bert", corpus(200), vocab=120)
    capsys.readouterr()  # transformers' own progress bar while saving it
    path = tmp_path / "chinese.txt"
    rng = random.Random(0)
    path.write_text(
        "\n".join("".join(chr(rng.randint(0x4E00, 0x9FA5)) for _ in range(20)) for _ in range(40))
    )
    code, _, err = run_cli(
        [
            "pretrain",
            "--method",
            "mlm",
            "--data",
            path,
            "--backbone",
            f"hf:{checkpoint}",
            "--out",
            tmp_path / "r",
        ]
        + ["--epochs", "1", "--batch-size", "8", "--quiet"],
        capsys,
    )
    assert_one_line_error(code, err, "are [UNK]")
    assert "does not know this text's words" in err and not (tmp_path / "r").exists()


def test_the_unknown_share_is_counted_and_its_limit_applies():
    tokenizer = train_tokenizer(["abc abc"] * 5, "char", 100)
    assert check_known_tokens(tokenizer, ["xyz"] * 5, 1.0, "") == 1.0
    with pytest.raises(DataError, match=r"100% of the tokens.*text.max_unknown=0.1"):
        check_known_tokens(tokenizer, ["xyz"] * 5, 0.1, "use another tokenizer")


# ---- 4. exports take the images the run was trained on -------------------------------------------


@pytest.fixture(scope="module")
def wide_run(tmp_path_factory) -> Path:
    """A run on 8×16 grey images."""
    folder = tmp_path_factory.mktemp("wide")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (48, 8, 16), dtype=np.uint8)
    np.savez(folder / "wide.npz", images=images, labels=np.arange(48) % 3)
    pretrain(
        "simclr",
        folder / "wide.npz",
        folder / "run",
        ["model.width=8", "train.batch_size=16", "train.precision=fp32", "train.device=cpu"],
    )
    return folder / "run"


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_exports_take_the_runs_own_image_shape_and_other_sizes(wide_run, tmp_path, fmt):
    from selfsup.models.export import export_encoder

    note = export_encoder(wide_run, fmt, tmp_path / f"e.{fmt}")
    assert note["input_shape"] == [1, 8, 16] and "N×1×8×16" in note["input"]
    assert json.loads((tmp_path / f"e.{fmt}.json").read_text())["input_shape"] == [1, 8, 16]
    assert note["any_size"]  # a convolutional network: dynamic height and width
    images = torch.rand(3, 1, 8, 16)
    other = torch.rand(2, 1, 12, 20)
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(tmp_path / "e.onnx"), providers=["CPUExecutionProvider"])
        outputs = [session.run(None, {"images": x.numpy()})[0] for x in (images, other)]
    else:
        loaded = torch.jit.load(str(tmp_path / "e.torchscript"))
        outputs = [loaded(x).detach().numpy() for x in (images, other)]
    assert outputs[0].shape[0] == 3 and outputs[1].shape[0] == 2


def test_state_dict_notes_name_the_runs_shape(wide_run, tmp_path):
    from selfsup.models.export import export_encoder

    note = export_encoder(wide_run, "safetensors", tmp_path / "e.safetensors")
    assert note["input_shape"] == [1, 8, 16]


def test_a_vit_export_keeps_the_runs_fixed_shape(tmp_path):
    from selfsup.models.export import export_encoder

    images = np.random.default_rng(0).integers(0, 256, (32, 8, 8), dtype=np.uint8)
    np.save(tmp_path / "square.npy", images)
    pretrain(
        "simclr",
        tmp_path / "square.npy",
        tmp_path / "run",
        ["model.backbone=vit", "model.width=16", "model.depth=1", "train.batch_size=16"]
        + ["train.precision=fp32", "model.patch_size=4"],
    )
    note = export_encoder(tmp_path / "run", "torchscript", tmp_path / "v.pt")
    assert note["input_shape"] == [1, 8, 8] and not note["any_size"] and "(fixed)" in note["input"]


def test_a_backbone_that_cannot_take_the_runs_shape_is_refused_before_training(tmp_path, capsys):
    np.save(tmp_path / "wide.npy", np.zeros((32, 8, 16), dtype=np.uint8))
    args = ["pretrain", "--method", "simclr", "--data", tmp_path / "wide.npy", "--out", tmp_path / "r"]
    code, _, err = run_cli(args + ["--backbone", "vit", "--epochs", "1", "--quiet"], capsys)
    assert_one_line_error(code, err, "cannot take images of 1×8×16")
    assert "data.image_size=N" in err and not (tmp_path / "r").exists()


def test_encoders_saved_before_the_shape_was_recorded_take_it_from_their_metadata(wide_run, tmp_path):
    from selfsup.models.encoder import load_encoder

    old = tmp_path / "old"
    shutil.copytree(wide_run, old)
    meta = json.loads((old / "encoder.json").read_text())
    del meta["encoder"]["input_size"]
    (old / "encoder.json").write_text(json.dumps(meta))
    assert load_encoder(old).spec["input_size"] == [8, 16]


# ---- 5. Hugging Face exports work with the standard code -----------------------------------------

LONG_TEXT = " ".join(["the market rose again today"] * 40)  # 200 words


def test_a_causal_lm_export_truncates_pads_and_runs_a_long_text(tmp_path):
    transformers = pytest.importorskip("transformers")
    path = tmp_path / "news.txt"
    path.write_text("\n".join(corpus(120)) + "\n")
    pretrain(
        "causal_lm",
        path,
        tmp_path / "run",
        ["model.width=32", "model.depth=1", "text.max_length=32", "train.batch_size=16"],
    )
    from selfsup.models.export import export_encoder

    export_encoder(tmp_path / "run", "hf", tmp_path / "hf")
    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    model = transformers.AutoModel.from_pretrained(tmp_path / "hf")
    assert tokenizer.model_max_length == 32 and tokenizer.padding_side == "right"
    assert tokenizer.pad_token is not None and tokenizer.eos_token is not None and tokenizer.bos_token
    batch = tokenizer([LONG_TEXT, "short"], truncation=True, padding=True, return_tensors="pt")
    assert batch["input_ids"].shape[1] == 32
    assert model(**batch).last_hidden_state.shape == (2, 32, 32)


@pytest.mark.parametrize("kind", ["bert", "gpt2"])
def test_a_continued_checkpoints_export_takes_a_long_text(tmp_path, kind):
    transformers = pytest.importorskip("transformers")
    from hf_tiny import tiny_bert, tiny_gpt2

    texts = corpus(120)
    checkpoint = (tiny_bert if kind == "bert" else tiny_gpt2)(tmp_path / kind, texts)
    path = tmp_path / "news.txt"
    path.write_text("\n".join(texts) + "\n")
    pretrain(
        "mlm" if kind == "bert" else "causal_lm",
        path,
        tmp_path / "run",
        [f"model.backbone=hf:{checkpoint}", "train.batch_size=16", "text.max_length=24"],
    )
    from selfsup.models.export import export_encoder

    export_encoder(tmp_path / "run", "hf", tmp_path / "hf")
    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    model = transformers.AutoModel.from_pretrained(tmp_path / "hf")
    positions = getattr(model.config, "n_positions", None) or model.config.max_position_embeddings
    assert tokenizer.model_max_length == positions and tokenizer.pad_token is not None
    batch = tokenizer([LONG_TEXT, "short"], truncation=True, padding=True, return_tensors="pt")
    assert batch["input_ids"].shape[1] == positions
    model(**batch)


# ---- 6. a write that fails leaves the run as it was and says why ---------------------------------


def selfsup_with_file_limit(args: list, limit: int, cwd: Path) -> subprocess.CompletedProcess:
    """``selfsup ARGS`` in a process whose files may not grow beyond ``limit`` bytes (``ulimit -f``:
    what a full disk or a quota does to a write, reported as EFBIG)."""

    def limited():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))

    env = {**os.environ, "PYTHONPATH": str(SRC), "SELFSUP_REPORT": "0"}
    return subprocess.run(
        [sys.executable, "-m", "selfsup", *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        preexec_fn=limited,
        timeout=300,
    )


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*.tmp*"))


@pytest.fixture(scope="module")
def small_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("writes") / "run"
    pretrain("simclr", "digits", out, ["model.width=8", "train.batch_size=256", "train.precision=fp32"])
    return out


def test_a_resume_that_cannot_write_its_checkpoint_says_why_and_keeps_the_run(small_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(small_run, run)
    before = (run / "checkpoint.pt").read_bytes()
    common = ["pretrain", "--method", "simclr", "--data", "digits", "--out", run, "--resume", "--quiet"]
    common += ["model.width=8", "train.batch_size=256", "train.precision=fp32"]
    failed = selfsup_with_file_limit(common + ["--epochs", "2"], 32 * 1024, tmp_path)
    lines = [line for line in failed.stderr.splitlines() if line.strip()]
    assert failed.returncode == 2 and "Traceback" not in failed.stderr, failed.stderr
    assert lines[-1].startswith("selfsup: error: cannot write") and "checkpoint.pt" in lines[-1]
    assert "File too large" in lines[-1] and "ulimit" in lines[-1]
    assert (run / "checkpoint.pt").read_bytes() == before and leftovers(run) == []
    epochs = [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1]  # the epoch whose checkpoint was never written is not listed
    again = selfsup_with_file_limit(common + ["--epochs", "2"], resource.RLIM_INFINITY, tmp_path)
    assert again.returncode == 0, again.stderr
    epochs = [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2] and leftovers(run) == []


@pytest.mark.parametrize(
    "args, culprit",
    [
        (["export", "{run}", "--format", "torchscript", "--out", "{tmp}/e.pt"], "e.pt"),
        (["export", "{run}", "--format", "onnx", "--out", "{tmp}/e.onnx"], "e.onnx"),
        (["embed", "{run}", "--data", "digits", "--out", "{tmp}/e.npy"], "e.npy"),
    ],
)
def test_every_output_that_cannot_be_written_is_one_line_and_leaves_nothing(
    small_run, tmp_path, args, culprit
):
    args = [a.format(run=small_run, tmp=tmp_path) for a in args]
    failed = selfsup_with_file_limit(args, 16 * 1024, tmp_path)
    lines = [line for line in failed.stderr.splitlines() if line.strip()]
    assert failed.returncode == 2 and "Traceback" not in failed.stderr, failed.stderr
    assert lines[-1].startswith("selfsup: error: cannot write") and culprit in lines[-1]
    assert not (tmp_path / culprit).exists() and leftovers(tmp_path) == []


def test_a_full_disk_names_the_space_needed_and_free(tmp_path, monkeypatch):
    class FullDisk:
        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    def full(handle):
        handle.raw = FullDisk()  # the file's writes fail as on a full disk
        handle.write(b"x" * 100)

    with pytest.raises(
        atomic.WriteError, match=r"cannot write .*x.bin: No space left on device.*needs about 5.0 KB"
    ):
        atomic.write_file(tmp_path / "x.bin", full, needed=5000)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(atomic, "_free", lambda folder: 1000)
    with pytest.raises(atomic.WriteError, match=r"needs about 5.0 KB, 1.0 KB free"):
        atomic.write_bytes(tmp_path / "y.bin", b"x" * 5000)  # refused before writing

    def reading(handle):
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", "input.png")

    with pytest.raises(FileNotFoundError):  # an input that cannot be read is not a failed write
        atomic.write_file(tmp_path / "z.bin", reading)
    assert list(tmp_path.iterdir()) == []


def test_a_library_that_words_a_write_error_its_own_way_is_translated(tmp_path, monkeypatch):
    def torch_like(handle):
        handle.write(b"x")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 640 vs 534")

    monkeypatch.setattr(atomic, "_free", lambda folder: 10)  # the disk is full
    with pytest.raises(atomic.WriteError, match="No space left on device"):
        atomic.write_file(tmp_path / "c.pt", torch_like)
    monkeypatch.setattr(atomic, "_free", lambda folder: 10**12)
    with pytest.raises(RuntimeError, match="enforce fail"):  # not a write failure: a bug, left as it is
        atomic.write_file(tmp_path / "c.pt", torch_like)
    assert list(tmp_path.iterdir()) == []


def test_a_killed_runs_temporary_files_are_removed_when_it_resumes(small_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(small_run, run)
    host = socket.gethostname()
    (run / f".checkpoint.pt.tmp-{host}-999999").write_bytes(b"torn")  # no such process
    mine = run / f".checkpoint.pt.tmp-{host}-{os.getppid()}"  # a live process's (this test's parent)
    mine.write_bytes(b"alive")
    other = run / ".checkpoint.pt.tmp-elsewhere-999999"  # another machine's, on a shared disk
    other.write_bytes(b"theirs")
    pretrain(
        "simclr",
        "digits",
        run,
        ["model.width=8", "train.batch_size=256", "train.precision=fp32"],
        epochs=2,
        resume=True,
    )
    assert not (run / f".checkpoint.pt.tmp-{host}-999999").exists() and mine.exists() and other.exists()


def test_a_cache_that_cannot_be_written_warns_and_the_data_are_still_read(tmp_path, monkeypatch):
    folder = make_image_folder(tmp_path / "imgs", per_class=3)

    def refuse(path, data):
        raise atomic.WriteError(f"cannot write {path}: File too large (EFBIG)")

    monkeypatch.setattr("selfsup.data.store.write_bytes", refuse)
    monkeypatch.setattr("selfsup.data.store.write_file", lambda path, write, needed=None: refuse(path, b""))
    with pytest.warns(UserWarning, match="could not cache the decoded images.*File too large"):
        with pytest.raises(atomic.WriteError, match="File too large"):
            load_data(folder)  # the temporary folder fails the same way: one line, no traceback


# ---- 7. a valid large image is read up to a limit the user sets ----------------------------------


def test_a_large_scan_is_too_large_not_corrupt_and_read_with_the_limit_raised(tmp_path, capsys):
    folder = make_image_folder(tmp_path / "scans", per_class=4, size=(16, 16))
    Image.new("1", (12000, 15000), 1).save(folder / "cat" / "scan.png")  # 180 megapixels, 51 KB
    assert (folder / "cat" / "scan.png").stat().st_size < 100_000
    args = ["pretrain", "--method", "simclr", "--data", folder, "--out", tmp_path / "r", "--epochs", "1"]
    args += ["data.image_size=16", "model.width=8", "train.batch_size=8", "--quiet"]
    code, _, err = run_cli(args, capsys)
    assert_one_line_error(code, err, "image too large")
    assert "180 megapixels" in err and "data.max_pixels=180000000" in err and "corrupt" not in err
    with pytest.warns(UserWarning, match=r"skipped 1 image\(s\) too large to read.*scan.png"):
        splits = load_data(folder, image_size=16, skip_bad_images=True)
    assert len(splits.train) + len(splits.test) == 8
    splits = load_data(folder, image_size=16, max_pixels=180_000_000)
    assert len(splits.train) + len(splits.test) == 9


def test_a_jpeg_that_will_be_resized_is_decoded_at_a_reduced_size():
    buffer = io.BytesIO()
    Image.new("RGB", (2000, 1600), (120, 30, 200)).save(buffer, format="JPEG")
    assert decode_image(buffer.getvalue(), at_least=16).shape == (200, 250, 3)  # 1/8: sides still ≥ 16
    assert decode_image(buffer.getvalue(), at_least=900).shape == (1600, 2000, 3)  # 1/2 would be < 900
    assert decode_image(buffer.getvalue()).shape == (1600, 2000, 3)


def test_pillows_own_limit_is_restored_after_a_build(tmp_path):
    limit = Image.MAX_IMAGE_PIXELS
    load_data(make_image_folder(tmp_path / "f", per_class=3))
    assert Image.MAX_IMAGE_PIXELS == limit


# ---- 8. a store follows its files -----------------------------------------------------------------


def replace_keeping_times(path: Path, write) -> None:
    """Change ``path``'s content to what ``write(path)`` writes, same size, times kept (``cp -p``)."""
    stat = path.stat()
    write(path)
    assert path.stat().st_size == stat.st_size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def grey(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (8, 8), value).save(path, format="PNG")


def pixel_values(splits) -> set[int]:
    images = [splits.train.images] + ([splits.test.images] if splits.test is not None else [])
    return {int(v) for part in images for v in torch.unique(part[:].reshape(-1))}


def test_a_folder_store_notices_pixels_changed_with_the_times_kept(tmp_path):
    for i in range(4):
        grey(tmp_path / "f" / f"{i}.png", 40)
    assert pixel_values(load_data(tmp_path / "f")) == {40}
    for i in range(4):
        replace_keeping_times(tmp_path / "f" / f"{i}.png", lambda p: grey(p, 200))
    assert pixel_values(load_data(tmp_path / "f")) == {200}


def test_an_archive_unpacked_again_with_other_pixels_is_read_again(tmp_path):
    def archive(value: int) -> None:
        for i in range(4):
            grey(tmp_path / "f" / f"{i}.png", value)
        with tarfile.open(tmp_path / "a.tar", "w") as tar:
            for i in range(4):
                info = tar.gettarinfo(tmp_path / "f" / f"{i}.png", arcname=f"{i}.png")
                info.mtime = 1_000_000
                with open(tmp_path / "f" / f"{i}.png", "rb") as handle:
                    tar.addfile(info, handle)

    archive(40)
    assert pixel_values(load_data(tmp_path / "a.tar")) == {40}
    replace_keeping_times(tmp_path / "a.tar", lambda p: archive(200))
    assert pixel_values(load_data(tmp_path / "a.tar")) == {200}


def test_an_image_lists_files_and_a_corpus_are_followed_too(tmp_path):
    for i in range(4):
        grey(tmp_path / f"{i}.png", 40)
    (tmp_path / "list.csv").write_text("path\n" + "".join(f"{i}.png\n" for i in range(4)))
    assert pixel_values(load_data(tmp_path / "list.csv")) == {40}
    for i in range(4):
        replace_keeping_times(tmp_path / f"{i}.png", lambda p: grey(p, 200))
    assert pixel_values(load_data(tmp_path / "list.csv")) == {200}

    text = tmp_path / "c.txt"
    text.write_text("\n".join(f"old text {i}" for i in range(20)) + "\n")
    assert "old text 0" in documents(load_data(text))
    replace_keeping_times(text, lambda p: p.write_text("\n".join(f"new text {i}" for i in range(20)) + "\n"))
    assert "new text 0" in documents(load_data(text))
