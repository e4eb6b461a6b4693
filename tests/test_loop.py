"""The loop's parts on their own: setup (build_run), one step, one epoch, and each callback,
without a run directory where none is needed."""

import json
import math

import pytest
import torch

from conftest import TINY
from selfsup.data import load_data
from selfsup.errors import TrainingError
from selfsup.methods import MethodOutput, Progress
from selfsup.methods.recipes import build_config
from selfsup.train import Callback, build_run, run_pretraining, step, train_one_epoch
from selfsup.train.callbacks import (
    Checkpoint,
    CollapseGuard,
    CollapseMetrics,
    EpochHook,
    ProgressBar,
    RunFiles,
    StepEnd,
    TensorBoard,
    read_history,
)
from selfsup.train.held_out import EncoderExport, HeldOutResults
from selfsup.train.loop import default_callbacks


@pytest.fixture(scope="module")
def digits():
    return load_data("digits")


def tiny_run(digits, tmp_path, method="byol", *overrides):
    config = build_config(method, small_images=True, overrides=TINY + ["train.epochs=2", *overrides])
    return build_run(config, digits, tmp_path / "run", torch.device("cpu"), resume=False, overwrite=False)


def test_build_run_makes_no_directory_and_precomputes_the_schedule(digits, tmp_path):
    run = tiny_run(digits, tmp_path)
    assert not run.run_dir.exists()
    assert run.steps_per_epoch == len(digits.train) // 128 and run.total_steps == 2 * run.steps_per_epoch
    warmup = round(0.5 * run.steps_per_epoch)
    assert run.lr_schedule[warmup - 1] == pytest.approx(run.peak_lr)  # the warm-up ends at the peak
    assert run.lr_schedule[-1] < run.lr_schedule[warmup]  # then the cosine decays
    assert not run.scaler.is_enabled()  # one precision path: the scaler is only on for float16


def test_step_changes_the_weights_and_calls_after_step(digits, tmp_path):
    run = tiny_run(digits, tmp_path)
    calls = []
    original = run.method.after_step
    run.method.after_step = lambda output, progress: (
        calls.append((output, progress)),
        original(output, progress),
    )
    before = [p.detach().clone() for p in run.method.encoder.parameters()]
    target = [p.detach().clone() for p in run.method.target_encoder.parameters()]
    progress = Progress(0, run.total_steps, run.steps_per_epoch)
    outcome = step(run, torch.arange(128), torch.Generator().manual_seed(0), progress)
    assert isinstance(outcome, StepEnd) and isinstance(outcome.output, MethodOutput)
    assert math.isfinite(outcome.loss) and outcome.lr == run.lr_schedule[0]
    assert run.optimizer.param_groups[0]["lr"] == pytest.approx(run.lr_schedule[0])
    assert any(not torch.equal(a, b) for a, b in zip(before, run.method.encoder.parameters()))
    assert calls and calls[0][0] is outcome.output and calls[0][1] == progress
    assert any(
        not torch.equal(a, b) for a, b in zip(target, run.method.target_encoder.parameters())
    )  # momentum


def test_step_refuses_a_nan_loss_before_the_weights_change(digits, tmp_path):
    run = tiny_run(digits, tmp_path)
    forward = run.model.forward
    run.model.forward = lambda *a, **k: MethodOutput(forward(*a, **k).loss * float("nan"))
    before = [p.detach().clone() for p in run.method.parameters()]
    with pytest.raises(TrainingError, match="loss became nan at epoch 1, step 1"):
        step(run, torch.arange(128), torch.Generator().manual_seed(0), Progress(0, 10, 5))
    assert all(torch.equal(a, b) for a, b in zip(before, run.method.parameters()))


class Recorder(Callback):
    def __init__(self):
        self.calls = []

    def on_fit_start(self, run):
        self.calls.append("fit_start")

    def on_epoch_start(self, run, epoch):
        self.calls.append(f"epoch_start {epoch}")

    def on_step_end(self, run, step):
        self.calls.append(f"step {step.progress.step}")

    def on_epoch_end(self, run, record):
        self.calls.append(f"epoch_end {record['epoch']}")


def test_train_one_epoch_returns_its_record_and_calls_on_step_end_per_step(digits, tmp_path):
    run = tiny_run(digits, tmp_path, "vicreg")
    recorder = Recorder()
    record = train_one_epoch(run, 1, [recorder])
    steps = run.steps_per_epoch
    assert recorder.calls == [
        f"step {steps + k}" for k in range(steps)
    ]  # epoch 1 (0-based): its global steps
    assert record["epoch"] == 2 and record["lr"] == run.lr_schedule[2 * steps - 1]
    assert list(record)[:5] == ["epoch", "loss", "invariance_loss", "variance_loss", "covariance_loss"]


def test_collapse_metrics_read_the_last_step_of_the_epoch_and_the_guard_acts_after_saving(digits, tmp_path):
    run = tiny_run(digits, tmp_path, "simclr", "train.stop_on_collapse=true", "train.collapse_threshold=100")
    monitor = CollapseMetrics()
    collapsed = torch.zeros(8, 4)
    collapsed[:, 0] = 1  # every embedding the same
    output = MethodOutput(torch.tensor(1.0), monitored={"embedding": collapsed})
    monitor.on_epoch_start(run, 0)
    monitor.on_step_end(run, StepEnd(output, Progress(0, 10, run.steps_per_epoch), 1.0, 0.1))
    assert monitor.metrics == {}  # not the epoch's last step
    monitor.on_step_end(
        run, StepEnd(output, Progress(run.steps_per_epoch - 1, 10, run.steps_per_epoch), 1.0, 0.1)
    )
    record = {"epoch": 1}
    monitor.on_epoch_end(run, record)
    assert record["embedding_std"] == pytest.approx(0.0) and record["embedding_dim"] == 4
    with pytest.raises(TrainingError, match="embedding collapse.* at epoch 1; stopped"):
        CollapseGuard(monitor).on_epoch_end(run, record)


def test_run_files_and_checkpoint_callbacks_write_the_run(digits, tmp_path):
    run = tiny_run(digits, tmp_path)
    run.run_dir.mkdir()
    files, checkpoint = RunFiles(), Checkpoint()
    files.on_fit_start(run)
    assert (run.run_dir / "config.yaml").exists() and read_history(run.run_dir) == []
    record = {"epoch": 1, "loss": 0.5, "embedding_std": float("nan")}
    run.history.append(record)  # as the loop does before the callbacks
    checkpoint.on_epoch_end(run, record)
    files.on_epoch_end(run, record)
    assert read_history(run.run_dir)[0]["loss"] == 0.5 and math.isnan(
        read_history(run.run_dir)[0]["embedding_std"]
    )
    state = torch.load(run.checkpoint_path, weights_only=True)
    assert state["epoch"] == 1 and state["method"] == "byol" and "scaler" not in state
    assert state["history"] == [{"epoch": 1, "loss": 0.5, "embedding_std": None}]  # strict, as the file


def test_default_callbacks_put_saving_before_acting_on_collapse(digits):
    config = build_config("simclr", small_images=True, overrides=TINY)
    names = [type(c).__name__ for c in default_callbacks(config, progress=True)]
    saving = ["CollapseMetrics", "Checkpoint", "RunFiles", "ProgressBar", "CollapseGuard"]
    assert names == saving + ["HeldOutResults", "EncoderExport"]


def test_progress_bar_prints_a_line_per_epoch_and_epoch_hook_sees_the_method(digits, tmp_path, capsys):
    run = tiny_run(digits, tmp_path)
    bar, seen = ProgressBar(), []
    hook = EpochHook(lambda record, method: seen.append((record["epoch"], method)))
    bar.on_epoch_start(run, 0)
    output = MethodOutput(torch.tensor(1.0))
    bar.on_step_end(run, StepEnd(output, Progress(0, 10, run.steps_per_epoch), 1.5, 0.25))
    record = {"epoch": 1, "loss": 1.5, "lr": 0.25, "images_per_s": 100.0, "seconds": 2.0}
    bar.on_epoch_end(run, record)
    hook.on_epoch_end(run, record)
    assert "epoch 1/2  loss 1.5000  lr 0.25  100 img/s  2.0s" in capsys.readouterr().err
    assert seen == [(1, run.method)]


def test_tensorboard_logs_the_epoch_scalars_but_not_the_dimensions(digits, tmp_path):
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tiny_run(digits, tmp_path)
    board = TensorBoard()
    board.on_fit_start(run)
    board.on_epoch_end(run, {"epoch": 1, "loss": 2.0, "embedding_dim": 32})
    board.on_fit_end(run)
    events = EventAccumulator(str(run.run_dir / "tensorboard"))
    events.Reload()
    assert events.Tags()["scalars"] == ["loss"] and events.Scalars("loss")[0].value == 2.0


def test_held_out_results_and_encoder_export_write_the_end_of_the_run(digits, tmp_path):
    overrides = ["model.width=32", "model.depth=2", "method.decoder_dim=32", "method.decoder_depth=1"]
    config = build_config("mae", small_images=True, overrides=overrides + ["train.pictures=2"])
    run = build_run(config, digits, tmp_path / "run", torch.device("cpu"), resume=False, overwrite=False)
    run.run_dir.mkdir()
    HeldOutResults().on_fit_end(run)
    EncoderExport().on_fit_end(run)
    files = {path.name for path in run.run_dir.iterdir()}
    assert {
        "test_metrics.json",
        "reconstructions.png",
        "encoder.safetensors",
        "encoder.json",
        "run.json",
    } <= files
    assert set(run.test_metrics) == {"masked_patch_loss", "reconstruction_mse"}
    summary = json.loads((run.run_dir / "run.json").read_text())
    assert summary["test_items"] == len(digits.test) and summary["precision"] in ("float32", "bfloat16")


def test_pretrain_calls_extra_callbacks_after_the_default_ones(digits, tmp_path):
    config = build_config("simclr", small_images=True, overrides=TINY + ["train.epochs=1"])
    recorder = Recorder()
    result = run_pretraining(config, digits, tmp_path / "run", progress=False, callbacks=[recorder])
    steps = len(digits.train) // 128
    assert recorder.calls == ["fit_start", "epoch_start 0"] + [f"step {k}" for k in range(steps)] + [
        "epoch_end 1"
    ]
    assert (
        result.history[0]["embedding_dim"] == 32
    )  # the monitors were in the record before the extra callback


def test_max_steps_ends_the_run_mid_epoch_and_the_schedule_spans_it(digits, tmp_path):
    per_epoch = len(digits.train) // 128
    config = build_config(
        "simclr", small_images=True, overrides=TINY + ["train.epochs=5", f"train.max_steps={per_epoch + 2}"]
    )
    seen = []

    class Steps(Callback):
        def on_step_end(self, run, step):
            seen.append(step.progress.step)

    result = run_pretraining(config, digits, tmp_path / "run", progress=False, callbacks=[Steps()])
    assert seen == list(range(per_epoch + 2)) and result.epochs == 2 and len(result.history) == 2
    assert all(math.isfinite(r["loss"]) for r in result.history)
    run = build_run(config, digits, tmp_path / "run", torch.device("cpu"), resume=True, overwrite=False)
    assert run.start_epoch == 2 == run.epochs and run.steps_in(1) == 2  # resumed: nothing left to train
    assert len(run.lr_schedule) == per_epoch + 2 and run.lr_schedule[-1] < run.lr_schedule[per_epoch]


def test_freed_large_blocks_go_back_to_the_system_on_glibc(monkeypatch):
    import sys

    from selfsup.train.machine import return_freed_memory

    assert return_freed_memory(0) is False  # glibc's own policy kept
    monkeypatch.setenv("SELFSUP_MMAP_THRESHOLD", "0")
    assert return_freed_memory() is False
    monkeypatch.delenv("SELFSUP_MMAP_THRESHOLD")
    glibc = sys.platform.startswith("linux") and __import__("platform").libc_ver()[0] == "glibc"
    assert return_freed_memory() is glibc
