"""Several processes give the same training as one (2 CPU processes, gloo): every method's loss and
gradients, an end-to-end pretraining, resuming with another number of processes, evaluation under
torchrun; and a peer that dies, hangs or never comes ends the run with a clear error."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import distributed_worker as worker
from selfsup import distributed
from selfsup.augment import ViewAugmenter
from selfsup.augment.ops import BatchShard
from selfsup.config import AugmentConfig
from selfsup.errors import ConfigError
from selfsup.methods.recipes import build_config

TESTS = Path(__file__).resolve().parent
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
SELFSUP = [sys.executable, "-m", "selfsup"]


def run(
    command: list[str], cwd: Path, timeout: float = 240, env: dict | None = None
) -> subprocess.CompletedProcess:
    result = subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def history(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def two_process_steps(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("dist") / "steps.pt"
    run(TORCHRUN + [str(TESTS / "distributed_worker.py"), "methods", str(out)], cwd=TESTS)
    return torch.load(out, weights_only=False)


@pytest.mark.parametrize("case", [*worker.CASES, *worker.EXTRA_CASES])
def test_two_processes_compute_the_loss_and_gradients_of_the_global_batch(case, two_process_steps):
    """2 processes × 8 examples = 1 process × 16: the loss, every gradient (after DDP's average),
    the buffers after the step (MoCo's queue, DINO's centre, BatchNorm statistics) and the collapse
    monitors, within 1e-5 of their scale."""
    one, two = worker.run_case(case), two_process_steps[case]
    assert two["loss"] == pytest.approx(one["loss"], rel=1e-5, abs=1e-6)
    scale = max(g.abs().max().item() for g in one["grads"].values() if g is not None)
    for name, grad in one["grads"].items():
        if grad is None:  # DINO's frozen prototypes: no gradient in either
            assert two["grads"][name] is None, name
            continue
        assert (two["grads"][name] - grad).abs().max().item() <= 1e-5 * scale, name
    for name, buffer in one["buffers"].items():
        torch.testing.assert_close(two["buffers"][name], buffer, rtol=1e-5, atol=1e-6, msg=name)
    assert one["monitors"].keys() == two["monitors"].keys()
    for name, value in one["monitors"].items():
        assert two["monitors"][name] == pytest.approx(value, rel=1e-4), name


def test_a_batch_shard_draws_the_global_batch_augmentations():
    """A process's share of the global batch gets exactly the views one process would give it."""
    images = torch.randint(0, 256, (12, 3, 16, 16), dtype=torch.uint8)
    config = AugmentConfig(blur_p=[0.5], solarize_p=[0.3])
    whole = ViewAugmenter(config)(images, torch.Generator().manual_seed(3))
    for start in (0, 4, 8):
        part = ViewAugmenter(config)(
            images[start : start + 4], BatchShard(torch.Generator().manual_seed(3), 12, start)
        )
        for view_whole, view_part in zip(whole, part):
            assert torch.equal(view_part, view_whole[start : start + 4])


def test_outside_torchrun_the_helpers_are_the_identity():
    x = torch.randn(4, 3, requires_grad=True)
    assert distributed.gather(x) is x and not distributed.active() and distributed.world_size() == 1
    assert distributed.check_batch(10) == 10
    bn = distributed.convert_sync_batch_norm(
        torch.nn.Sequential(torch.nn.BatchNorm1d(3)), torch.device("cpu")
    )
    assert isinstance(bn[0], distributed.GlobalBatchNorm)
    torch.testing.assert_close(bn(x), torch.nn.functional.batch_norm(x, None, None, training=True))


def test_bad_settings_are_clear_errors(monkeypatch):
    with pytest.raises(ConfigError, match="train.sync_batch_norm"):
        build_config("simclr", small_images=True, overrides=["train.sync_batch_norm=maybe"])
    assert (
        build_config(
            "simclr", small_images=True, overrides=["train.sync_batch_norm=true"]
        ).train.sync_batch_norm
        == "true"
    )
    monkeypatch.setattr(distributed, "world_size", lambda: 4)
    with pytest.raises(ConfigError, match="global batch and must divide evenly over the 4 processes; got 30"):
        distributed.check_batch(30)


PRETRAIN = [
    "pretrain",
    "--method",
    "simclr",
    "--data",
    "digits",
    "--batch-size",
    "64",
    "--quiet",
    "model.width=8",
    "train.precision=fp32",
]


def test_two_processes_train_like_one_and_resume_with_one(tmp_path):
    """The same loss curve and collapse monitors with 1 and 2 processes (SimCLR, global batch 64,
    global BatchNorm), also after both runs are resumed in 1 process for one more epoch; evaluation
    under torchrun gives the same numbers as in one process, written by rank 0 alone."""
    one, two = tmp_path / "one", tmp_path / "two"
    run(SELFSUP + PRETRAIN + ["--epochs", "2", "--out", str(one)], cwd=tmp_path)
    result = run(TORCHRUN + ["-m", "selfsup"] + PRETRAIN + ["--epochs", "2", "--out", str(two)], cwd=tmp_path)
    assert result.stdout.count("final loss") == 1  # rank 0 prints
    for run_dir in (one, two):
        run(SELFSUP + PRETRAIN + ["--epochs", "3", "--out", str(run_dir), "--resume"], cwd=tmp_path)
    # not bit-equal: sums run in another order, and a 1e-7 difference can flip a near-tie in max
    # pooling (digits have many equal pixels); measured: epochs 1-2 within 1e-7, the resumed
    # epoch 3 within 1.2e-4 (loss) and 1.4e-3 (embedding std)
    for a, b in zip(history(one), history(two), strict=True):
        assert b["lr"] == a["lr"]
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-3), a["epoch"]
        for key in ("embedding_std", "embedding_rank", "projection_std"):
            assert b[key] == pytest.approx(a[key], rel=1e-2), (a["epoch"], key)

    evaluate = [
        "evaluate",
        str(one),
        "--protocol",
        "knn,linear",
        "--labels",
        "5/class",
        "--seeds",
        "2",
        "--quiet",
    ]
    run(SELFSUP + evaluate, cwd=tmp_path)
    alone = json.loads((one / "eval.json").read_text())["results"]
    (one / "eval.json").unlink()
    result = run(TORCHRUN + ["-m", "selfsup"] + evaluate, cwd=tmp_path)
    assert json.loads((one / "eval.json").read_text())["results"] == alone
    assert result.stdout.count("written to") == 1


def free_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def peer_env(rank: int, port: str) -> dict:
    return {
        **os.environ,
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": port,
        "WORLD_SIZE": "2",
        "RANK": str(rank),
        "LOCAL_RANK": str(rank),
        "OMP_NUM_THREADS": "1",
    }


@pytest.mark.parametrize("mode", ["die", "hang"])
def test_a_failed_or_hung_peer_ends_the_run_with_a_clear_error(mode, tmp_path):
    port = free_port()
    peers = [
        subprocess.Popen(
            [sys.executable, str(TESTS / "distributed_worker.py"), "fail", mode, str(tmp_path / "run")],
            cwd=tmp_path,
            env=peer_env(rank, port),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in (0, 1)
    ]
    try:
        started = time.perf_counter()
        _, stderr = peers[0].communicate(timeout=120)
        assert peers[0].returncode == 2, stderr[-2000:]
        assert "process 0 of 2 lost the others during training" in stderr
        assert (
            "Connection" if mode == "die" else "imeout"
        ) in stderr  # gloo: "Timed out ...", "Application timeout ..."
        assert time.perf_counter() - started < 60
        assert (tmp_path / "run" / "checkpoint.pt").exists()  # epoch 1, written by rank 0 before the failure
    finally:
        for peer in peers:
            peer.kill()
            peer.communicate()


def test_a_peer_that_never_comes_is_a_clear_error(tmp_path):
    result = subprocess.run(
        SELFSUP + PRETRAIN + ["train.dist_timeout=3", "--epochs", "1", "--out", str(tmp_path / "run")],
        cwd=tmp_path,
        env=peer_env(0, free_port()),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "selfsup: error (process 0): process 0 of 2 could not join the others" in result.stderr
    assert "within train.dist_timeout=3 s" in result.stderr
    assert not (tmp_path / "run").exists()


def test_two_nodes_each_build_their_store_and_train_like_one_process(tmp_path):
    """Two torchrun launchers of one process each, rendezvousing on 127.0.0.1 as two machines
    would (each with its own cache: its own store), train on an image folder as one process does."""
    from conftest import make_image_folder

    folder = make_image_folder(tmp_path / "pets", per_class=40, size=(8, 8), splits=("train", "test"))
    args = [a if a != "digits" else str(folder) for a in PRETRAIN] + ["--epochs", "2"]
    run(
        SELFSUP + args + ["--out", str(tmp_path / "one")],
        cwd=tmp_path,
        env={"SELFSUP_CACHE_DIR": str(tmp_path / "c0")},
    )
    port = free_port()
    node = (
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nnodes",
            "2",
            "--nproc_per_node",
            "1",
            "--rdzv_backend",
            "c10d",
            "--rdzv_endpoint",
            f"127.0.0.1:{port}",
            "--rdzv_id",
            "two-nodes",
            "-m",
            "selfsup",
        ]
        + args
        + ["--out", str(tmp_path / "two")]
    )
    launchers = [
        subprocess.Popen(
            node,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "SELFSUP_CACHE_DIR": str(tmp_path / f"node{k}"), "OMP_NUM_THREADS": "1"},
        )
        for k in range(2)
    ]
    outputs = [launcher.communicate(timeout=240) for launcher in launchers]
    assert [launcher.returncode for launcher in launchers] == [0, 0], [err[-2000:] for _, err in outputs]
    assert sum(out.count("final loss") for out, _ in outputs) == 1  # the process of rank 0 prints
    assert all(list((tmp_path / f"node{k}").glob("*.store")) for k in range(2))  # one store per machine
    for a, b in zip(history(tmp_path / "one"), history(tmp_path / "two"), strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-3), a["epoch"]


def test_two_processes_on_one_machine_read_disjoint_shares_of_one_store(tmp_path):
    """Under torchrun, local rank 0 builds the store and the other waits; both map the same files
    (one copy in the page cache), and each step's rows of the two processes are disjoint and make up
    the global batch."""
    from conftest import make_image_folder

    folder = make_image_folder(tmp_path / "pets", per_class=20, size=(8, 8))
    out = tmp_path / "shares.json"
    command = TORCHRUN + [str(TESTS / "distributed_worker.py"), "shares", str(folder), str(out)]
    run(command, cwd=tmp_path, env={"SELFSUP_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"})
    first, second = sorted(json.loads(out.read_text()), key=lambda found: found["rank"])
    assert len(list((tmp_path / "cache").glob("*.store"))) == 1
    assert first["mapped"] == second["mapped"] and first["mapped"]
    assert all(str(tmp_path / "cache") in path for path in first["mapped"])
    assert first["order"] == second["order"] and len(first["rows"]) == 4  # 32 training images, batches of 8
    for k, (a, b) in enumerate(zip(first["rows"], second["rows"], strict=True)):
        assert len(a) == len(b) == 4 and not set(a) & set(b)
        assert sorted(a + b) == sorted(first["order"][8 * k : 8 * (k + 1)])
