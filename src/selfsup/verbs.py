"""The verbs of the ``selfsup`` command and their options, each written once.

One :class:`Verb` per command verb lists its :class:`Option` s: the name, type, default and help
text of each, the :mod:`selfsup.api` keyword it fills and the configuration key it sets (such as
``train.epochs``). :mod:`selfsup.cli` builds its argparse parser from these and calls the api
function of the verb with :meth:`Verb.arguments`; each api function turns its keyword parameters
into configuration flags with :meth:`Verb.flags`. Adding an option: one line here and a keyword
parameter of the api function (``tests/test_cli.py`` checks that the two agree).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


def csv(text: str) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``: a comma-separated option value."""
    return [part.strip() for part in text.split(",") if part.strip()]


@dataclass(frozen=True)
class Option:
    """One option (``--name``) or positional argument (``name``) of a verb.

    A ``flag`` takes no value: True when given, else None where it sets a config ``key`` (the
    recipe's value stands) and False where it does not. ``negate``: the api keyword is the flag's
    opposite (``--quiet`` gives ``progress=False``)."""

    name: str
    help: str | None = None
    type: Callable[[str], Any] | None = None
    default: Any = None
    key: str | None = None
    param: str | None = None
    flag: bool = False
    negate: bool = False
    required: bool = False
    choices: tuple[str, ...] | None = None
    metavar: str | None = None
    nargs: str | None = None

    @property
    def positional(self) -> bool:
        return not self.name.startswith("-")

    @property
    def dest(self) -> str:
        """The attribute argparse stores the value in: ``--batch-size`` -> ``batch_size``."""
        return self.name.lstrip("-").replace("-", "_")

    @property
    def keyword(self) -> str:
        """The keyword parameter of the verb's api function that this option fills."""
        return self.param or self.dest


@dataclass(frozen=True)
class Verb:
    """A verb of the command: its help line and page, its options, and the api function it calls
    (``function``, default: the verb's name). ``distributed``: it runs in every process under
    torchrun (the others run in the process of rank 0 only). ``free_text``: its positional
    arguments are the user's own text, never read as ``key=value`` settings."""

    name: str
    help: str
    description: str
    options: tuple[Option, ...] = ()
    function: str = ""
    distributed: bool = False
    free_text: bool = False

    @property
    def api_function(self) -> str:
        """The name of the :mod:`selfsup.api` function the verb calls."""
        return self.function or self.name

    def arguments(self, parsed: Mapping[str, Any]) -> dict[str, Any]:
        """The api function's keyword arguments from the parsed command line (argparse's ``vars``)."""
        return {o.keyword: (not parsed[o.dest]) if o.negate else parsed[o.dest] for o in self.options}

    def flags(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The configuration flags ``{"train.epochs": 5, ...}`` of the api function's keyword
        parameters ``values`` (its ``locals()``), in the options' order; None: not given.

        Raises KeyError where ``values`` lacks the keyword of an option that sets a key."""
        return {o.key: values[o.keyword] for o in self.options if o.key}


DEVICES = ("auto", "cpu", "cuda")


def _device(help: str | None = None, key: str | None = None) -> Option:
    return Option("--device", help, choices=DEVICES, key=key)


def _quiet(help: str | None = None) -> Option:
    return Option("--quiet", help, flag=True, param="progress", negate=True)


def _strategy(help: str) -> Option:
    """``--strategy``: how ``select`` and ``fit --budget`` pick their items."""
    return Option(
        "--strategy", help, default="typiclust", choices=("typiclust", "probcover", "kcenter", "random")
    )


def _overrides(help: str) -> Option:
    return Option("overrides", help, nargs="*", metavar="key=value")


RUN_DIR = Option("run_dir", metavar="RUN_DIR")

PRETRAIN = Verb(
    "pretrain",
    "pretrain an encoder with a self-supervised method",
    "Pretrain an encoder; writes config.yaml, metrics.jsonl, checkpoint.pt and "
    "encoder.safetensors in the run directory.",
    (
        Option("--method", "method name (see `selfsup methods`; default simclr)", default="simclr"),
        Option(
            "--data",
            "'digits', an image folder, a .tar/.tar.gz/.zip of one, a .npy/.npz file, a .parquet "
            "file or Hugging Face save_to_disk folder of images, a .csv/.tsv list of image paths, "
            "or a text corpus (.txt, .csv, .tsv, .jsonl, .parquet; .gz too) for the text methods",
            required=True,
        ),
        Option(
            "--backbone",
            "resnet18, resnet34, resnet50, small_cnn, vit, ... (default: the recipe's)",
            key="model.backbone",
        ),
        Option("--epochs", "number of epochs (default: the recipe's)", int, key="train.epochs"),
        Option("--batch-size", "batch size (default: the recipe's)", int, key="train.batch_size"),
        Option("--seed", "random seed (default 0)", int, key="train.seed"),
        _device("training device (default auto: CUDA if present)", key="train.device"),
        Option("--out", "run directory (default runs/<method>-<data>-<time>)"),
        Option("--resume", "continue from RUN_DIR/checkpoint.pt", flag=True),
        Option("--overwrite", "replace a finished or interrupted run in --out", flag=True),
        Option("--config", "a YAML file of settings applied over the method's recipe"),
        Option(
            "--skip-bad-images",
            "skip corrupt images (with a warning that counts them) instead of stopping",
            flag=True,
            key="data.skip_bad_images",
        ),
        _quiet("no progress bar or per-epoch lines"),
        Option(
            "--tensorboard",
            "also log the epoch metrics for TensorBoard in RUN_DIR/tensorboard "
            "(pip install 'selfsup[tensorboard]')",
            flag=True,
            key="train.tensorboard",
        ),
        Option("--no-report", "do not write RUN_DIR/report.html", flag=True, param="report", negate=True),
        _overrides(
            "override any setting, e.g. optim.lr=0.5 method.temperature=0.2 augment.crop_scale=[0.2,1]"
        ),
    ),
    distributed=True,
)

EVALUATE = Verb(
    "evaluate",
    "few-label evaluation of a run's encoder (writes RUN_DIR/eval.json)",
    "Evaluate a pretrained encoder with kNN, a linear probe, fine-tuning, and the "
    "from-scratch and raw-pixel baselines, over label budgets and seeds.",
    (
        RUN_DIR,
        Option("--data", "labelled data to evaluate on (default: the run's own data)", key="data.spec"),
        Option(
            "--labels",
            "label budgets: counts of items (20: drawn at random or by --strategy), and, class-balanced "
            "(they need the labels first), fractions of each class (0.01) and N/class, e.g. 10,20,1/class",
            csv,
            key="eval.labels",
        ),
        Option(
            "--strategy",
            "how the counts of items are picked: any of random (default), typiclust, probcover, kcenter",
            csv,
            key="eval.strategies",
            param="strategies",
        ),
        Option(
            "--labelled",
            "score the protocols trained on exactly the labels of this file (CSV/TSV with path or index "
            "and label, or a Label Studio export) instead of the budgets",
            metavar="FILE",
        ),
        Option("--seeds", "number of seeded labelled subsets per budget", int, key="eval.seeds"),
        Option(
            "--protocol",
            "any of knn,linear,finetune,scratch and pixels (images) or tfidf (text)",
            csv,
            key="eval.protocols",
            param="protocols",
        ),
        _device(key="train.device"),
        _quiet(),
        Option("--no-report", "do not (re)write RUN_DIR/report.html", flag=True, param="report", negate=True),
        _overrides("override eval settings, e.g. eval.knn_k=20"),
    ),
)

SELECT = Verb(
    "select",
    "pick the items worth labelling (TypiClust, ProbCover, k-centre, random)",
    "Pick --budget training items for the user to label, from the run's encoder's features: "
    "FILE.csv (rank, index, path or text, cluster, score, and an empty label column to fill in), "
    "FILE.labelstudio.json and .labelstudio.xml (tasks and interface for Label Studio), FILE.html "
    "(the picks as pictures). Labels come back with --labelled in select, evaluate and fit.",
    (
        RUN_DIR,
        Option("--budget", "how many items to pick", int, required=True, metavar="N"),
        _strategy(
            "typiclust (default: typical items of the largest clusters), probcover (greedy coverage of "
            "δ-balls), kcenter (the greedy k-centre core set) or random"
        ),
        Option("--data", "data to pick from (default: the run's own data)", key="data.spec"),
        Option(
            "--labelled",
            "a labels file (CSV/TSV with path or index and label, or a Label Studio export): the items "
            "labelled already; the picks complement them",
            metavar="FILE",
        ),
        Option("--seed", "seed of what is random in the strategy (default 0)", int, default=0),
        Option(
            "--features", "reuse the features `selfsup embed` wrote for the same data", metavar="FILE.npy"
        ),
        Option("--out", "the picks' CSV (default RUN_DIR/picks.csv)", metavar="FILE.csv"),
        _device(key="train.device"),
        _quiet(),
        _overrides("how to read the data, e.g. data.image_size=32"),
    ),
)

FIT = Verb(
    "fit",
    "fit the task model: a classifier from a few labels and the unlabelled rest",
    "Fit a classifier on the run's encoder from the labels of --labelled (or --budget items picked "
    "by --strategy, their labels read from the data: a simulated labeller) and the unlabelled "
    "training items (--semi); writes MODEL_DIR (the classifier, classes.json, classifier.json with "
    "its cross-validated accuracy, report.html) for `selfsup predict` and `selfsup export`.",
    (
        RUN_DIR,
        Option(
            "--labelled", "a labels file: select's CSV filled in, or a Label Studio export", metavar="FILE"
        ),
        Option(
            "--budget",
            "pick N items and read their labels from the data (benchmarks, demos)",
            int,
            metavar="N",
        ),
        _strategy("how --budget picks (default typiclust)"),
        Option("--data", "data to fit on (default: the run's own data)", key="data.spec"),
        Option(
            "--protocol",
            "linear (a head on the frozen encoder), finetune (encoder and head), or auto (default: "
            "chosen by cross-validation on the labels)",
            default="auto",
            choices=("auto", "linear", "finetune"),
        ),
        Option(
            "--semi",
            "the unlabelled items: propagate (default: label spreading), self-train, distill, none",
            default="propagate",
            choices=("propagate", "self-train", "distill", "none"),
        ),
        Option(
            "--student",
            "distill: the student backbone (small_cnn, resnet18, timm:NAME, ...; default: the run's)",
        ),
        Option("--seed", "seed of the picks and the training (default 0)", int, default=0),
        Option("--out", "the model directory (default RUN_DIR/model)", metavar="MODEL_DIR"),
        _device(key="train.device"),
        _quiet(),
        _overrides("settings, e.g. eval.finetune_epochs=50 data.image_size=32"),
    ),
)

PREDICT = Verb(
    "predict",
    "predict the classes of any number of items with a task model",
    "One row per item of --data: index, path (or text), label, probability and, with --top-k K, "
    "the next K-1 classes; streamed a batch at a time.",
    (
        Option("model_dir", metavar="MODEL_DIR"),
        Option("--data", "images or texts to predict", required=True),
        Option(
            "--out",
            "the predictions' CSV (default predictions.csv)",
            default="predictions.csv",
            metavar="FILE.csv",
        ),
        Option(
            "--top-k", "the K most probable classes of each item (default 1)", int, default=1, metavar="K"
        ),
        _device(),
        _quiet(),
    ),
)

EMBED = Verb(
    "embed",
    "write a data set's embeddings to a .npy file",
    "Embed every image of a data set with a run's encoder: FILE.npy (N×D) and "
    "FILE.json (split, index, label and path of each row).",
    (
        RUN_DIR,
        Option("--data", required=True, key="data.spec"),
        Option("--out", required=True, metavar="FILE.npy"),
        _device(),
        _quiet(),
        _overrides("how to read the data, e.g. data.image_size=32"),
    ),
)

AUGMENT = Verb(
    "augment",
    "save a grid of images and their augmented views (PNG)",
    "See what the model sees: a PNG grid, one row per image, the original "
    "then each augmented view of the chosen pipeline.",
    (
        Option("--data", required=True),
        Option(
            "--preset",
            "augmentation preset: simclr, simclr_cifar, byol, dino, mae, small "
            "(default: the method's recipe for this data)",
        ),
        Option("--method", "whose recipe gives the pipeline when --preset is absent", default="simclr"),
        Option("--images", "rows (images) in the grid (default 8)", int, default=8),
        Option("--seed", type=int, default=0),
        Option("--out", "default augment.png", default="augment.png", metavar="FILE.png"),
        _overrides("change the pipeline, e.g. augment.blur_p=1"),
    ),
    function="augment_grid",
)

ABLATE = Verb(
    "ablate",
    "compare augmentations: drop each, try them in pairs, or sweep one setting",
    "Short pretrainings that differ only in their augmentations, each scored with kNN and "
    "the linear probe: the full pipeline and without each augmentation (--drop, the default), "
    "each augmentation alone and in every pair as in SimCLR's Figure 5 (--pairs: a heat map), "
    "or one setting at several values (--sweep: a curve). Table printed; OUT/ablation.json, "
    "OUT/report.html and OUT/ablation.png saved.",
    (
        Option("--method", default="simclr"),
        Option("--data", required=True, key="data.spec"),
        Option(
            "--drop",
            "augmentations to remove one at a time: crop,color,grayscale,blur,solarize,flip "
            "(the default study: crop,color,grayscale,blur,flip)",
            csv,
        ),
        Option(
            "--pairs",
            "augmentations to train alone and in every pair, all others off, e.g. "
            "crop,color,grayscale,blur,flip",
            csv,
        ),
        Option(
            "--sweep",
            "one setting at several values, e.g. augment.brightness=0,0.2,0.4,0.8",
            metavar="KEY=V1,V2,...",
        ),
        Option("--epochs", "epochs of each pretraining (default: the recipe's)", int, key="train.epochs"),
        Option("--labels", "label budgets (default: the recipe's)", csv),
        Option("--seeds", "labelled subsets per budget (default: the recipe's)", int),
        Option(
            "--subset",
            "pretrain on a class-balanced subset of N training images (the probes' labels still "
            "come from the whole split)",
            int,
            metavar="N",
        ),
        Option("--out", "directory of the runs and ablation.json (default runs/ablate-<method>-<data>)"),
        _quiet(),
        _overrides("settings for every run, e.g. train.batch_size=128"),
    ),
    distributed=True,
)

DEMO = Verb(
    "demo",
    "pretrain on the built-in digits and evaluate with 1, 5, 10 labels per class",
    "A complete run in about a minute on a laptop CPU: SimCLR on scikit-learn's "
    "digits, then the few-label table.",
    (
        Option("--out", "run directory (default runs/demo)", default="runs/demo"),
        _quiet(),
        _overrides("change the recipe, e.g. train.epochs=50"),
    ),
    distributed=True,
)

DENOISE = Verb(
    "denoise",
    "noise a text and print a BART run's reconstruction of it",
    "Noise the text with the run's own noising functions, then decode the model's reconstruction (greedy).",
    (
        RUN_DIR,
        Option("text", metavar="TEXT"),
        Option(
            "--no-noise",
            "reconstruct the text as given (e.g. with your own <mask>s)",
            flag=True,
            param="noise",
            negate=True,
        ),
        Option("--seed", "seed of the noise (default 0)", int, default=0),
        _device(),
    ),
    free_text=True,
)

GENERATE = Verb(
    "generate",
    "sample text from a causal LM run",
    "Continue a prompt by sampling from a causal language model run.",
    (
        RUN_DIR,
        Option("--prompt", "text to continue (default: none)", default=""),
        Option("--tokens", "tokens to sample (default 200)", int, default=200),
        Option("--temperature", "sampling temperature (default: the run's, 1.0)", float),
        Option("--top-k", "sample from the k most likely tokens (default: the run's; 0: all)", int),
        Option("--seed", type=int, default=0),
        _device(),
    ),
    free_text=True,
)

REPORT = Verb(
    "report",
    "(re)write a run's report.html",
    "Write RUN_DIR/report.html: one self-contained page (configuration, curves, "
    "evaluation, embedding map, retrieval, the method's pictures).",
    (RUN_DIR, _device()),
)

COMPARE = Verb(
    "compare",
    "compare runs side by side (table and page)",
    "Print a table comparing runs (accuracy per label budget, wall time) and write "
    "a page with it and their curves overlaid.",
    (
        Option("run_dirs", nargs="+", metavar="RUN_DIR"),
        Option("--out", "default comparison.html", default="comparison.html", metavar="FILE.html"),
    ),
)

EXPORT = Verb(
    "export",
    "write a run's encoder for torchvision, timm, ONNX, TorchScript or Hugging Face",
    "Take a run's encoder out of selfsup: a state dict that the named library's model loads "
    "(strict, its classifier removed), a TorchScript or ONNX model (normalisation included, "
    "dynamic batch, checked against PyTorch), plain safetensors, or a Hugging Face folder for "
    "runs started from an hf: checkpoint. A note OUT.json beside it says how to load it.",
    (
        RUN_DIR,
        Option(
            "--format",
            "what to write (default safetensors)",
            default="safetensors",
            choices=("safetensors", "torchvision", "timm", "torchscript", "onnx", "hf"),
        ),
        Option("--out", "file (folder for hf) to write (default RUN_DIR/export/encoder.<format>)"),
    ),
)

METHODS = Verb(
    "methods",
    "list the methods with their family and paper",
    "List the available self-supervised methods.",
)

VERBS = {
    verb.name: verb
    for verb in (
        PRETRAIN,
        EVALUATE,
        SELECT,
        FIT,
        PREDICT,
        EMBED,
        AUGMENT,
        ABLATE,
        DEMO,
        DENOISE,
        GENERATE,
        REPORT,
        COMPARE,
        EXPORT,
        METHODS,
    )
}
"""Every verb by name, in the order of ``selfsup --help``."""
