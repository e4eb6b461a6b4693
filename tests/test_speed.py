"""The step without host synchronisation: losses read every ``train.log_every`` steps, the
augmentation's per-image choices without ``nonzero`` on a GPU, ``train.compile`` and its fallback,
and the dry steps that leave no trace."""

import json
import math

import pytest
import torch

from conftest import TINY
from selfsup.augment import AugmentConfig, ViewAugmenter, ops
from selfsup.config import preset_config
from selfsup.data import load_data
from selfsup.errors import ConfigError, TrainingError
from selfsup.methods import MethodOutput, Progress
from selfsup.methods.recipes import build_config
from selfsup.train import Callback, build_run, run_pretraining, speed, train_one_epoch
from selfsup.train.loop import LossLog, log_interval, step
from test_loop import tiny_run

MEASURES = speed.measures_precision


@pytest.fixture(scope="module")
def digits():
    return load_data("digits")


class StepValues(Callback):
    """What the loop logged before ``train.log_every``: each step's loss and terms read at once."""

    def __init__(self):
        self.losses, self.terms, self.read = [], {}, []

    def on_step_end(self, run, step):
        self.losses.append(step.output.loss.item())
        for key, value in step.output.terms.items():
            self.terms.setdefault(key, []).append(value.item())
        self.read.append(step.loss)


@pytest.mark.parametrize("every", [0, 1, 3, 100])
def test_the_epoch_record_is_each_steps_values_summed_whatever_the_log_interval(digits, tmp_path, every):
    run = tiny_run(digits, tmp_path, "vicreg", f"train.log_every={every}")
    values = StepValues()
    record = train_one_epoch(run, 0, [values])
    steps = run.steps_per_epoch
    assert record["loss"] == sum(values.losses) / steps  # exactly: the same floats in the same order
    for key, series in values.terms.items():
        assert record[key] == sum(series) / steps
    interval = log_interval(run)
    assert interval == (every or 1)  # auto on the CPU: every step
    read = [k for k, loss in enumerate(values.read) if loss is not None]
    assert read == sorted({k for k in range(steps) if (k + 1) % interval == 0} | {steps - 1})
    assert all(values.read[k] == values.losses[k] for k in read)


def test_a_nan_is_reported_at_the_step_it_appeared_when_read_later(digits, tmp_path):
    run = tiny_run(digits, tmp_path, "simclr", "train.log_every=4")
    forward, calls = run.model.forward, {"n": 0}

    def nan_at_second_step(*args, **kwargs):
        calls["n"] += 1
        output = forward(*args, **kwargs)
        return MethodOutput(output.loss * float("nan")) if calls["n"] == 2 else output

    run.model.forward = nan_at_second_step
    with pytest.raises(TrainingError, match="loss became nan at epoch 1, step 2"):
        train_one_epoch(run, 0, [])
    assert calls["n"] == 4  # found at the read of step 4


def test_log_every_must_not_be_negative():
    with pytest.raises(ConfigError, match="train.log_every"):
        build_config("simclr", small_images=True, overrides=["train.log_every=-1"])


def test_loss_log_reads_steps_with_different_terms():
    log = LossLog(every=2)
    log.add(Progress(0, 4, 4), MethodOutput(torch.tensor(1.0), {"a": torch.tensor(2.0)}))
    log.add(
        Progress(1, 4, 4), MethodOutput(torch.tensor(3.0), {"a": torch.tensor(4.0), "b": torch.tensor(5.0)})
    )
    assert not log.due(Progress(0, 4, 4)) and log.due(Progress(1, 4, 4)) and log.due(Progress(3, 4, 4))
    assert log.read(None) == 3.0 and log.loss_sum == 4.0 and log.term_sums == {"a": 6.0, "b": 5.0}
    assert log.pending == []


@pytest.mark.parametrize("preset", ["simclr", "byol", "dino"])
def test_the_sync_free_augmentation_makes_the_same_views(monkeypatch, preset):
    """On a GPU every image is transformed and the chosen ones kept (no nonzero); on the CPU only
    the chosen ones are: the views are the same."""
    images = torch.randint(
        0, 256, (8, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1)
    )
    augmenter = ViewAugmenter(preset_config(preset))
    chosen = augmenter(images, torch.Generator().manual_seed(2))
    monkeypatch.setattr(ops, "SYNC_FREE_ON_CPU", True)
    every = augmenter(images, torch.Generator().manual_seed(2))
    assert len(chosen) == len(every) and all(torch.equal(a, b) for a, b in zip(chosen, every))


@pytest.mark.parametrize("channels", [1, 3])
def test_the_sync_free_path_keeps_whole_unflipped_images_and_grey_ones(monkeypatch, channels):
    """The whole image unflipped, and colour jitter of grey images (saturation and hue off): the
    two ways agree there too (the CPU's skips those steps)."""
    images = torch.randint(
        0, 256, (6, channels, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(3)
    )
    config = AugmentConfig(views=1, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_p=0.0, jitter_p=0.5)
    (chosen,) = ViewAugmenter(config)(images, torch.Generator().manual_seed(4))
    monkeypatch.setattr(ops, "SYNC_FREE_ON_CPU", True)
    (every,) = ViewAugmenter(config)(images, torch.Generator().manual_seed(4))
    assert torch.allclose(chosen, every, atol=1e-6)


def before_dry_steps(run):
    """A first batch's views, and what dry steps must leave as it was: the parameters, the buffers
    (BatchNorm's statistics) and the random generator."""
    method = run.method
    params = [p.detach().clone() for p in method.parameters()]
    buffers = [b.detach().clone() for b in method.buffers()]
    views = run.modality.views(run.inputs[:128], torch.Generator().manual_seed(0))
    return views, (params, buffers, torch.get_rng_state())


def assert_no_trace(method, state) -> None:
    params, buffers, rng = state
    assert all(torch.equal(a, b) for a, b in zip(params, method.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(buffers, method.buffers()))
    assert all(p.grad is None for p in method.parameters()) and torch.equal(rng, torch.get_rng_state())


def test_dry_steps_leave_no_trace(digits, tmp_path):
    run = tiny_run(digits, tmp_path, "simclr")
    views, state = before_dry_steps(run)
    with speed.no_trace(run.method, run.device):
        seconds = speed.time_steps(run.method, views, {}, None, run.device, repeats=1)
    assert seconds > 0
    assert_no_trace(run.method, state)


def test_compile_auto_is_off_on_the_cpu_and_on_with_cuda():
    assert not speed.wants_compile("auto", torch.device("cpu")) and speed.wants_compile(
        "true", torch.device("cpu")
    )
    assert speed.wants_compile("auto", torch.device("cuda")) and not speed.wants_compile(
        "false", torch.device("cuda")
    )


def test_precision_is_measured_where_bf16_is_a_candidate(monkeypatch):
    monkeypatch.setattr(speed, "measures_precision", MEASURES)  # conftest pins it off for other tests
    for native in (True, False):
        monkeypatch.setattr(speed, "cpu_has_native_bf16", lambda native=native: native)
        assert speed.measures_precision("auto", torch.device("cpu")) is native
        assert not speed.measures_precision("fp32", torch.device("cpu"))
        assert not speed.measures_precision("bf16", torch.device("cpu"))


def timed_by(monkeypatch, seconds: dict):
    """Dry steps that advance a clock the test owns by ``seconds[amp_dtype]``; ``auto`` measured as
    on a CPU with native bf16. Returns the list of dtypes the dry steps ran in."""
    now, ran, real = [0.0], [], speed.dry_step

    def dry_step(method, views, inputs, amp_dtype, device):
        real(method, views, inputs, amp_dtype, device)
        ran.append(amp_dtype)
        now[0] += seconds[amp_dtype]

    monkeypatch.setattr(speed, "dry_step", dry_step)
    monkeypatch.setattr(speed, "clock", lambda: now[0])
    monkeypatch.setattr(speed, "measures_precision", lambda setting, device: setting == "auto")
    return ran


@pytest.mark.parametrize("faster", ["bf16", "fp32"])
def test_auto_takes_the_faster_precision_by_measurement_and_caches_it(digits, tmp_path, monkeypatch, faster):
    ran = timed_by(
        monkeypatch,
        {speed.PRECISIONS[faster]: 0.1, speed.PRECISIONS[{"bf16": "fp32", "fp32": "bf16"}[faster]]: 0.3},
    )
    run = tiny_run(digits, tmp_path, "simclr")
    method = run.method
    views, state = before_dry_steps(run)
    monkeypatch.setenv("SELFSUP_CACHE_DIR", str(tmp_path / "cache"))  # this machine's first measurement
    choices = speed.choose(method, views, {}, torch.bfloat16, run.device, "auto", "false")
    assert choices.amp_dtype == speed.PRECISIONS[faster] and choices.source == "measured"
    assert choices.step_seconds[faster] == pytest.approx(0.1) and len(ran) == 8  # 4 dry steps each
    assert_no_trace(method, state)

    again = speed.choose(method, views, {}, torch.bfloat16, run.device, "auto", "false")
    assert again.amp_dtype == choices.amp_dtype and again.source == "cache" and len(ran) == 8
    monkeypatch.setattr(torch, "get_num_threads", lambda: 97)  # another thread count: measured anew
    assert speed.choose(method, views, {}, torch.bfloat16, run.device, "auto", "false").source == "measured"
    # a correctness guard's float32 (ResNets on 1×1 maps) stays whatever the timing says
    assert speed.choose(method, views, {}, None, run.device, "auto", "false").amp_dtype is None


def test_a_run_records_its_measured_precision_and_a_resume_keeps_it(digits, tmp_path, monkeypatch):
    timed_by(monkeypatch, {torch.bfloat16: 0.3, None: 0.1})
    monkeypatch.setenv("SELFSUP_CACHE_DIR", str(tmp_path / "cache"))
    config = build_config("simclr", small_images=True, overrides=TINY + ["train.epochs=1"])
    first = run_pretraining(config, digits, tmp_path / "run", progress=False)
    assert first.speed["precision"] == "fp32" and first.speed["precision_from"] == "measured"
    recorded = json.loads((tmp_path / "run" / "run.json").read_text())
    assert recorded["precision"] == "float32" and recorded["speed"]["precision"] == "fp32"
    timed_by(monkeypatch, {torch.bfloat16: 0.1, None: 0.3})  # the machine now says bf16
    config = build_config("simclr", small_images=True, overrides=TINY + ["train.epochs=2"])
    resumed = run_pretraining(config, digits, tmp_path / "run", progress=False, resume=True)
    assert resumed.speed["precision"] == "fp32" and resumed.speed["precision_from"] == "checkpoint"


def test_a_compiled_run_trains_as_an_eager_one(digits, tmp_path, monkeypatch):
    """``train.compile=true`` with TorchDynamo's "eager" backend (the graph capture without
    Inductor's code generation, which a test cannot wait for): the same losses, the same
    state-dict keys."""
    monkeypatch.setattr(speed, "BACKEND", "eager")
    config = build_config("simclr", small_images=True, overrides=TINY + ["train.epochs=1"])
    eager = run_pretraining(config, digits, tmp_path / "eager", progress=False)
    compiled_config = build_config(
        "simclr", small_images=True, overrides=TINY + ["train.epochs=1", "train.compile=true"]
    )
    compiled = run_pretraining(compiled_config, digits, tmp_path / "compiled", progress=False)
    torch._dynamo.reset()
    assert compiled.speed["compiled"] and not eager.speed
    assert compiled.history[0]["loss"] == pytest.approx(eager.history[0]["loss"], rel=1e-5)
    saved = torch.load(tmp_path / "compiled" / "checkpoint.pt", weights_only=False)["method"]
    assert not any("_orig_mod" in key for key in saved)


def test_a_failed_compilation_warns_and_trains_eagerly(digits, tmp_path, monkeypatch):
    def broken_backend(graph, example_inputs):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(speed, "BACKEND", broken_backend)
    config = build_config(
        "simclr", small_images=True, overrides=TINY + ["train.epochs=1", "train.compile=true"]
    )
    with pytest.warns(UserWarning, match="torch.compile failed .*training continues without it"):
        result = run_pretraining(config, digits, tmp_path / "run", progress=False)
    torch._dynamo.reset()
    assert not result.speed["compiled"] and math.isfinite(result.final_loss)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: the host synchronisations are CUDA's")
@pytest.mark.parametrize("method", ["simclr", "byol", "simsiam", "barlow_twins", "vicreg", "dino", "moco_v2"])
def test_the_training_step_issues_no_host_synchronisation_on_cuda(digits, tmp_path, method):
    config = build_config(method, small_images=True, overrides=TINY + ["train.epochs=2", "train.device=cuda"])
    run = build_run(config, digits, tmp_path / "run", torch.device("cuda"), resume=False, overwrite=False)
    generator = run.augment_generator(0)
    log = LossLog(every=1000)
    index, batch = run.share(run.order(0), 0), None
    step(run, index, generator, run.progress(0, 0), log=log)  # the first step may set things up
    from selfsup.train.loop import gather

    gathered = gather(run, run.share(run.order(0), 1))
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        index, batch = gathered.arrived()
        step(run, index, generator, run.progress(0, 1), batch, log)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert math.isfinite(log.read(run))


def test_the_evaluation_computes_in_the_precision_the_run_measured_on_this_machine(tmp_path, monkeypatch):
    from selfsup import runs
    from selfsup.train import device as devices
    from selfsup.train.machine import machine_info

    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: True)  # bf16 the flags' choice
    config = build_config("simclr", small_images=True)
    record = {"machine": machine_info(), "device": "cpu", "speed": {"precision": "fp32"}}
    (tmp_path / "run.json").write_text(json.dumps(record))
    cpu = torch.device("cpu")
    assert runs.run_precision(tmp_path, config, cpu) is None  # measured: fp32
    record["machine"]["cpu"] = "another CPU"
    (tmp_path / "run.json").write_text(json.dumps(record))
    assert runs.run_precision(tmp_path, config, cpu) == torch.bfloat16  # not measured here: the flags
    config.train.precision = "bf16"
    assert runs.run_precision(tmp_path, config, cpu) == torch.bfloat16
