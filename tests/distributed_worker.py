"""Run by test_distributed.py in 2 processes (torchrun's environment variables, gloo on the CPU).

    python distributed_worker.py methods OUT.pt   every method's loss, gradients, buffers and monitors
                                                  for its share of one global batch (rank 0 saves them)
    python distributed_worker.py fail MODE RUN    a short pretraining in which rank 1 dies (MODE die)
                                                  or hangs (MODE hang) after its first epoch

``run_case`` is also what the test calls in one process on the whole batch, for the reference.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import replace

import torch

from selfsup import distributed
from selfsup.losses.text import IGNORE, token_loss
from selfsup.methods import MethodOutput, Progress, get_method
from selfsup.models.encoder import Encoder
from selfsup.models.text import TextEncoder
from selfsup.train.monitors import collapse_metrics

GLOBAL_BATCH = 16
VIT = {"backbone": "vit", "width": 16, "depth": 1, "patch_size": 2}

CASES = {
    "simclr": ("simclr", {"proj_dim": 16}),
    "barlow_twins": ("barlow_twins", {"proj_dim": 32}),
    "vicreg": ("vicreg", {"proj_dim": 32}),
    "byol": ("byol", {"proj_hidden_dim": 32, "proj_dim": 16, "pred_hidden_dim": 32}),
    "simsiam": ("simsiam", {"proj_dim": 32, "pred_hidden_dim": 16}),
    "moco_v2": ("moco_v2", {"proj_dim": 16, "queue_size": 40, "bn_splits": 1}),
    "moco_v3": ("moco_v3", {"proj_hidden_dim": 32, "proj_dim": 16, "pred_hidden_dim": 32}),
    "dino": ("dino", {"out_dim": 64, "hidden_dim": 32, "bottleneck_dim": 16, "freeze_last_layer_epochs": 0}),
    "dino_frozen_prototypes": ("dino", {"out_dim": 64, "hidden_dim": 32, "bottleneck_dim": 16}),
    "swav": (
        "swav",
        {"proj_hidden_dim": 32, "proj_dim": 16, "prototypes": 12, "freeze_prototypes_epochs": 0}
        | {"queue_size": 40, "queue_start_epoch": 0},
    ),
    "swav_frozen_prototypes": ("swav", {"proj_hidden_dim": 32, "proj_dim": 16, "prototypes": 12}),
    "nnclr": ("nnclr", {"proj_hidden_dim": 32, "proj_dim": 16, "pred_hidden_dim": 32, "queue_size": 40}),
    "siamese_contrastive": ("siamese", {"proj_dim": 16}),
    "siamese_hardest": ("siamese", {"proj_dim": 16, "mining": "hardest"}),
    "siamese_triplet_semi_hard": ("siamese", {"proj_dim": 16, "loss": "triplet", "mining": "semi_hard"}),
    # the text methods' randomness is drawn by each process for its own rows, so no split of the
    # batch can repeat one process's draws. SimCSE: dropout 0, so the two views are equal (the loss
    # still contrasts each sentence with the 15 others of the gathered batch); a dropout mask seeded
    # per example would need a dropout of selfsup's own in the encoder. ELECTRA: its masks and
    # generator samples are drawn for the global batch from fixed seeds and each process takes
    # its rows (seeded_global_draws), so one and two processes corrupt every example alike
    "simcse": ("simcse", {"dropout": 0.0}),
    "electra": ("electra", {}),
    # on a 1-block ViT (the third element: the encoder's arguments); their masks are drawn for the
    # global batch from a generator seeded by the step, each process taking its rows
    "ijepa": (
        "ijepa",
        {"predictor_dim": 16, "predictor_depth": 1, "predictor_heads": 2, "min_context": 2},
        VIT,
    ),
    "ibot": (
        "ibot",
        {"out_dim": 64, "hidden_dim": 32, "bottleneck_dim": 16, "freeze_last_layer_epochs": 0},
        VIT,
    ),
    "ibot_frozen_prototypes": (
        "ibot",
        {"out_dim": 64, "hidden_dim": 32, "bottleneck_dim": 16, "pred_ratio_zero_p": 0.0},
        VIT,
    ),
}
"""Each method with a small head; BatchNorm in the encoder and heads (global in 2 processes); the
text methods on a tiny transformer (tiny_text_encoder)."""
TEXT_LENGTH, TEXT_VOCAB = 12, 40


class TokenLoss(torch.nn.Module):
    """An output layer under the language models' token loss: each process has its own number of
    predicted tokens (the others are IGNORE)."""

    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(8, 11)

    def forward(self, views):
        features, targets = views
        return MethodOutput(token_loss(self.layer(features), targets))


class BatchNormOnPoints(torch.nn.Module):
    """BatchNorm over N×C×1×1 maps (ResNet's last stage at 32 px) under a per-example loss."""

    def __init__(self):
        super().__init__()
        self.norm = torch.nn.BatchNorm2d(6)
        torch.nn.init.uniform_(self.norm.weight, 0.5, 1.5)
        torch.nn.init.uniform_(self.norm.bias, -1, 1)

    def forward(self, views):
        x, target = views
        return MethodOutput(((self.norm(x) - target) ** 2).mean())


EXTRA_CASES = {"token_loss": TokenLoss, "batch_norm_on_points": BatchNormOnPoints}


def tiny_text_encoder() -> TextEncoder:
    """A 2-block transformer of width 16 with a fixed WordPiece vocabulary (the same in every
    process: a trained tokenizer's ids may differ between runs)."""
    from tokenizers import Tokenizer, models

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = {token: i for i, token in enumerate(specials + [f"w{k}" for k in range(TEXT_VOCAB - 5)])}
    tokenizer = Tokenizer(models.WordPiece(words, unk_token="[UNK]"))
    return TextEncoder(TEXT_VOCAB, 16, 2, 2, TEXT_LENGTH).attach_tokenizer(tokenizer)


def seeded_global_draws(method) -> None:
    """ELECTRA's masking and sampling drawn for the whole global batch from fixed seeds (masks as
    ``mlm_mask``, samples by the Gumbel-max trick), this process taking its rows."""
    ids = global_inputs("electra")[0]
    with torch.random.fork_rng():
        torch.manual_seed(5)
        masked, targets = method.corrupt(ids)
    noise = torch.rand(*ids.shape, TEXT_VOCAB, generator=torch.Generator().manual_seed(6))
    gumbel = -torch.log(-torch.log(noise))
    share = GLOBAL_BATCH // distributed.world_size()
    rows = slice(distributed.rank() * share, (distributed.rank() + 1) * share)
    selected = targets[rows] != IGNORE
    method.corrupt = lambda _: (masked[rows], targets[rows])
    method.sample = lambda logits: (logits.detach()[:, 5:] + gumbel[rows][selected][:, 5:]).argmax(1) + 5


def build(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if name in EXTRA_CASES:
        return EXTRA_CASES[name]()
    method, params, *encoder_args = CASES[name]
    info = get_method(method)
    if info.build.modality == "text":
        encoder = tiny_text_encoder()
    else:
        args = {"backbone": "small_cnn", "width": 8} | (encoder_args[0] if encoder_args else {})
        encoder = Encoder(in_channels=1, image_size=8, mean=[0.5], std=[0.25], **args)
    built = info.build(encoder, replace(info.params(), **params))
    if name == "electra":
        seeded_global_draws(built)
    return built


def global_inputs(name: str) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    if name == "token_loss":
        targets = torch.randint(0, 11, (GLOBAL_BATCH, 5), generator=generator)
        targets[: GLOBAL_BATCH // 2, 2:] = IGNORE  # the first process predicts fewer tokens
        return [torch.randn(GLOBAL_BATCH, 5, 8, generator=generator), targets]
    if name == "batch_norm_on_points":
        return [
            3 * torch.randn(GLOBAL_BATCH, 6, 1, 1, generator=generator) + 1,
            torch.randn(GLOBAL_BATCH, 6, 1, 1, generator=generator),
        ]
    if name in ("simcse", "electra"):  # [CLS] tokens [SEP], then padding: 4 to 11 tokens a row
        ids = torch.randint(5, TEXT_VOCAB, (GLOBAL_BATCH, TEXT_LENGTH), generator=generator)
        lengths = torch.randint(4, TEXT_LENGTH, (GLOBAL_BATCH,), generator=generator)
        ids[:, 0] = 2
        ids[torch.arange(GLOBAL_BATCH), lengths - 1] = 3
        ids[torch.arange(TEXT_LENGTH) >= lengths[:, None]] = 0
        return [ids]
    return [torch.rand(GLOBAL_BATCH, 1, 8, 8, generator=generator) for _ in range(2)]


def run_case(name: str) -> dict:
    """One training step's quantities for this process's share of the global batch: the loss of
    the global batch (mean over processes), every parameter's gradient after DDP's average, the
    buffers after ``after_step`` (queues, centres, BatchNorm statistics) and the collapse monitors."""
    method = build(name)
    model = method
    world, rank = distributed.world_size(), distributed.rank()
    if world > 1:
        method = distributed.convert_sync_batch_norm(method, torch.device("cpu"))
        model = torch.nn.parallel.DistributedDataParallel(
            method, find_unused_parameters=getattr(method, "skips_parameters", False)
        )
    share = GLOBAL_BATCH // world
    views = [v[rank * share : (rank + 1) * share] for v in global_inputs(name)]
    out = model(views)
    out.loss.backward()
    if hasattr(method, "after_step"):
        method.after_step(out, Progress(0, 10))
    gathered = {key: distributed.gather(value) for key, value in out.monitored.items()}
    return {
        "loss": float(distributed.mean_over_processes(out.loss.detach())),
        "grads": {
            n: (p.grad.clone() if p.grad is not None else None)
            for n, p in method.named_parameters()
            if p.requires_grad
        },
        "buffers": {n: b.clone() for n, b in method.named_buffers()},
        "monitors": collapse_metrics(gathered) if "embedding" in gathered else {},
    }


def fail(mode: str, run_dir: str) -> None:
    from selfsup import api
    from selfsup.data import load_data
    from selfsup.methods.recipes import build_config
    from selfsup.train import run_pretraining

    def on_epoch_end(record, method):
        if distributed.rank() == 1:
            if mode == "die":
                os._exit(3)
            time.sleep(120)

    config = build_config(
        "simclr",
        small_images=True,
        overrides=[
            "data.spec=digits",
            "train.epochs=3",
            "train.batch_size=64",
            "model.width=8",
            "train.dist_timeout=4",
            "train.precision=fp32",
        ],
    )
    try:
        run_pretraining(config, load_data("digits"), run_dir, progress=False, on_epoch_end=on_epoch_end)
    except api.SelfsupError as exc:
        print(f"selfsup: error: {exc}", file=sys.stderr)
        sys.exit(2)
    finally:
        distributed.shutdown()


def shares(data: str, out: str) -> None:
    """Each process's rows of one epoch's batches of a stored image folder, and the store files it
    maps (rank 0 saves them all as JSON)."""
    import json
    from pathlib import Path

    from selfsup.data import load_data
    from selfsup.methods.recipes import build_config
    from selfsup.train import build_run

    distributed.setup(torch.device("cpu"), 60)
    config = build_config(
        "simclr", small_images=True, overrides=[f"data.spec={data}", "train.batch_size=8", "model.width=8"]
    )
    splits = load_data(data)
    run = build_run(config, splits, Path(out).parent / "run", torch.device("cpu"), False, True)
    order = run.order(0)
    rows = [run.share(order, k).tolist() for k in range(run.steps_per_epoch)]
    mapped = sorted({line.split()[-1] for line in open("/proc/self/maps") if line.rstrip().endswith(".npy")})
    mine = {"rank": distributed.rank(), "rows": rows, "mapped": mapped, "order": order.tolist()}
    found = [None] * distributed.world_size()
    torch.distributed.all_gather_object(found, mine)
    if distributed.is_main():
        Path(out).write_text(json.dumps(found))
    distributed.shutdown()


if __name__ == "__main__":
    if sys.argv[1] == "shares":
        shares(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "methods":
        import datetime

        torch.distributed.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
        results = {name: run_case(name) for name in [*CASES, *EXTRA_CASES]}
        if distributed.is_main():
            torch.save(results, sys.argv[2])
        distributed.shutdown()
    else:
        fail(sys.argv[2], sys.argv[3])
