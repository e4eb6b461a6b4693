"""Everything that watches training, as callbacks with explicit hooks.

The loop calls, in list order: ``on_fit_start(run)`` once the run is built, ``on_epoch_start(run,
epoch)``, ``on_step_end(run, step)`` after every optimiser step, ``on_epoch_end(run, record)``
with the epoch's metrics (a callback may add to them: the collapse monitors do), and
``on_fit_end(run)`` after the last epoch. An exception in a hook stops the run.
:func:`selfsup.train.loop.default_callbacks` is the list a run gets; only rank 0's write files.
"""

from __future__ import annotations

import json
import math
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from selfsup import distributed
from selfsup.atomic import remove_stale_temporaries, write_text
from selfsup.config import CONFIG_FILE, save_config
from selfsup.data.folders import process_alive
from selfsup.errors import ConfigError, TrainingError
from selfsup.jsonfile import strict, to_json
from selfsup.methods import MethodOutput, Progress
from selfsup.train.checkpoint import save_checkpoint
from selfsup.train.monitors import collapse_message, collapse_metrics

METRICS_FILE = "metrics.jsonl"


@dataclass
class StepEnd:
    """What ``on_step_end`` receives: the step's :class:`MethodOutput`, its progress, the loss of
    the global batch (a float) at the steps where the loop read it from the device (every
    ``train.log_every`` steps and the last of each epoch; None at the others: reading waits for
    the device) and the learning rate used."""

    output: MethodOutput
    progress: Progress
    loss: float | None
    lr: float


class Callback:
    """The hooks, each doing nothing by default."""

    def on_fit_start(self, run) -> None: ...

    def on_epoch_start(self, run, epoch: int) -> None: ...

    def on_step_end(self, run, step: StepEnd) -> None: ...

    def on_epoch_end(self, run, record: dict) -> None: ...

    def on_fit_end(self, run) -> None: ...


class RunFiles(Callback):
    """``config.yaml``, the tokenizer (text) and ``metrics.jsonl``: the restored history at the
    start, then rewritten (atomically) with each epoch's line once the epoch's checkpoint is
    saved, so that the file lists exactly the epochs a resumed run keeps."""

    def on_fit_start(self, run) -> None:
        remove_stale_temporaries(run.run_dir, process_alive)  # what a killed run left
        write_text(run.run_dir / METRICS_FILE, "".join(to_json(r) + "\n" for r in run.history))
        save_config(run.config, run.run_dir / CONFIG_FILE)
        run.modality.save(run.method.encoder, run.run_dir)

    def on_epoch_end(self, run, record: dict) -> None:
        write_text(run.run_dir / METRICS_FILE, "".join(to_json(r) + "\n" for r in run.history))


class Checkpoint(Callback):
    """``checkpoint.pt`` after every epoch, written atomically: the method, the optimiser (and the
    fp16 scaler), the epoch, the configuration and the epochs' records (what ``metrics.jsonl``
    holds, so a resumed run restores them from the checkpoint they belong to)."""

    def on_epoch_end(self, run, record: dict) -> None:
        config = run.config
        state = {
            "epoch": record["epoch"],
            "method": config.method_name,
            "backbone": config.model.backbone,
            "config": config.to_dict(),
            "model": run.method.state_dict(),
            "optimizer": run.optimizer.state_dict(),
            "history": [strict(r) for r in run.history],
            "speed": run.speed,  # the precision chosen: a resumed run keeps it
        }
        if run.scaler.is_enabled():
            state["scaler"] = run.scaler.state_dict()
        save_checkpoint(state, run.checkpoint_path)


class TensorBoard(Callback):
    """The epoch metrics as TensorBoard scalars in ``RUN_DIR/tensorboard`` (``train.tensorboard``).
    Raises :class:`ConfigError` when built without the tensorboard package."""

    def __init__(self):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError(
                "--tensorboard needs the tensorboard package: pip install 'selfsup[tensorboard]'"
            ) from None
        self.writer_class, self.writer = SummaryWriter, None

    def on_fit_start(self, run) -> None:
        self.writer = self.writer_class(str(run.run_dir / "tensorboard"))

    def on_epoch_end(self, run, record: dict) -> None:
        for key, value in record.items():
            if key != "epoch" and not key.endswith("_dim"):
                self.writer.add_scalar(key, value, record["epoch"])
        self.writer.flush()

    def on_fit_end(self, run) -> None:
        self.writer.close()


class ProgressBar(Callback):
    """A bar per epoch (loss, learning rate, images per second) and a line at its end, on stderr."""

    def on_epoch_start(self, run, epoch: int) -> None:
        epochs = run.epochs
        self.bar = tqdm(
            total=run.steps_in(epoch),
            desc=f"epoch {epoch + 1}/{epochs}",
            leave=False,
            file=sys.stderr,
            dynamic_ncols=True,
        )
        self.started, self.seen = time.perf_counter(), 0

    def on_step_end(self, run, step: StepEnd) -> None:
        self.seen += run.config.train.batch_size
        if step.loss is not None:  # a step whose loss was read (train.log_every)
            speed = self.seen / (time.perf_counter() - self.started)
            self.bar.set_postfix(
                loss=f"{step.loss:.4f}", lr=f"{step.lr:.3g}", img_s=f"{speed:.0f}", refresh=False
            )
        self.bar.update()

    def on_epoch_end(self, run, record: dict) -> None:
        self.bar.close()
        epochs = run.epochs
        print(
            f"epoch {record['epoch']}/{epochs}  loss {record['loss']:.4f}  lr {record['lr']:.4g}  "
            f"{record['images_per_s']:.0f} img/s  {record['seconds']:.1f}s",
            file=sys.stderr,
        )


class CollapseMetrics(Callback):
    """The collapse monitors of the last batch of each epoch (of the global batch: gathered from
    every process, so it runs in all of them), added to the epoch's record; keeps the warning for
    :class:`CollapseGuard`."""

    def __init__(self):
        self.metrics: dict = {}
        self.warning: str | None = None

    def on_epoch_start(self, run, epoch: int) -> None:
        self.metrics, self.warning = {}, None

    def on_step_end(self, run, step: StepEnd) -> None:
        last = step.progress.step + 1 == run.total_steps  # a last epoch train.max_steps cuts
        if (step.progress.step + 1) % run.steps_per_epoch and not last:
            return
        monitored = {key: distributed.gather(value) for key, value in step.output.monitored.items()}
        self.metrics = collapse_metrics(monitored)
        self.metrics.update(
            {
                f"{name}_dim": monitored[name].shape[1]
                for name in ("embedding", "projection")
                if name in monitored
            }
        )
        self.warning = collapse_message(monitored, self.metrics, run.config.train.collapse_threshold)

    def on_epoch_end(self, run, record: dict) -> None:
        record.update(self.metrics)


class CollapseGuard(Callback):
    """Acts on :class:`CollapseMetrics`' warning once the epoch is saved: a warning, or with
    ``train.stop_on_collapse`` a :class:`TrainingError`."""

    def __init__(self, monitor: CollapseMetrics):
        self.monitor = monitor

    def on_epoch_end(self, run, record: dict) -> None:
        warning, epoch = self.monitor.warning, record["epoch"]
        if not warning:
            return
        if run.config.train.stop_on_collapse:
            raise TrainingError(
                f"{warning} at epoch {epoch}; stopped (train.stop_on_collapse). "
                f"The checkpoint of this epoch is {run.checkpoint_path}."
            )
        if distributed.is_main():
            warnings.warn(f"{warning} at epoch {epoch} (train.stop_on_collapse=true stops the run)")


class EpochHook(Callback):
    """Calls ``hook(record, method)`` at the end of each epoch, after the checkpoint (the api's
    ``on_epoch_end``)."""

    def __init__(self, hook: Callable[[dict, object], None]):
        self.hook = hook

    def on_epoch_end(self, run, record: dict) -> None:
        self.hook(record, run.method)


def restored_history(records: list[dict]) -> list[dict]:
    """Epoch records as a checkpoint holds them (strict: None for NaN), with NaN restored."""
    return [{key: math.nan if value is None else value for key, value in r.items()} for r in records]


def read_history(run_dir: Path, upto_epoch: int | None = None) -> list[dict]:
    """The epoch records of ``RUN_DIR/metrics.jsonl`` (up to ``upto_epoch``); none without the file.
    A value the file holds as null (a NaN when it was written) is read as NaN."""
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return []
    records = restored_history([json.loads(line) for line in path.read_text().splitlines() if line.strip()])
    return [r for r in records if upto_epoch is None or r["epoch"] <= upto_epoch]
