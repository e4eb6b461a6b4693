"""The `selfsup` command: parses arguments and calls :mod:`selfsup.api`."""

from __future__ import annotations

import argparse
import re
import sys
import warnings

from selfsup import __version__
from selfsup.errors import SelfsupError


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line on stderr, exit code 2."""

    def error(self, message: str):
        self.exit(2, f"selfsup: error: {message} (see `{self.prog} --help`)\n")


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


DISTRIBUTED_VERBS = ("pretrain", "demo", "ablate")
"""Verbs whose pretraining runs in every process under torchrun (evaluation: rank 0)."""


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="selfsup", description="Self-supervised pretraining and few-label evaluation."
    )
    parser.add_argument("--version", action="version", version=f"selfsup {__version__}")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=OneLineParser)

    p = verbs.add_parser(
        "pretrain",
        help="pretrain an encoder with a self-supervised method",
        description="Pretrain an encoder; writes config.yaml, metrics.jsonl, checkpoint.pt and "
        "encoder.safetensors in the run directory.",
    )
    p.add_argument("--method", default="simclr", help="method name (see `selfsup methods`; default simclr)")
    p.add_argument(
        "--data",
        required=True,
        help="'digits', an image folder, a .tar/.tar.gz of one, a .npy/.npz file, "
        "or a text corpus (.txt, .csv, .tsv) for the text methods",
    )
    p.add_argument(
        "--backbone", help="resnet18, resnet34, resnet50, small_cnn, vit, ... (default: the recipe's)"
    )
    p.add_argument("--epochs", type=int, help="number of epochs (default: the recipe's)")
    p.add_argument("--batch-size", type=int, help="batch size (default: the recipe's)")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument(
        "--device", choices=["auto", "cpu", "cuda"], help="training device (default auto: CUDA if present)"
    )
    p.add_argument("--out", help="run directory (default runs/<method>-<data>-<time>)")
    p.add_argument("--resume", action="store_true", help="continue from RUN_DIR/checkpoint.pt")
    p.add_argument("--overwrite", action="store_true", help="replace a finished or interrupted run in --out")
    p.add_argument("--config", help="a YAML file of settings applied over the method's recipe")
    p.add_argument(
        "--skip-bad-images",
        action="store_true",
        default=None,
        help="skip corrupt images (with a warning that counts them) instead of stopping",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    p.add_argument(
        "--tensorboard",
        action="store_true",
        default=None,
        help="also log the epoch metrics for TensorBoard in RUN_DIR/tensorboard (pip install 'selfsup[tensorboard]')",
    )
    p.add_argument("--no-report", action="store_true", help="do not write RUN_DIR/report.html")
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="override any setting, e.g. optim.lr=0.5 method.temperature=0.2 augment.crop_scale=[0.2,1]",
    )

    e = verbs.add_parser(
        "evaluate",
        help="few-label evaluation of a run's encoder (writes RUN_DIR/eval.json)",
        description="Evaluate a pretrained encoder with kNN, a linear probe, fine-tuning, and the "
        "from-scratch and raw-pixel baselines, over label budgets and seeds.",
    )
    e.add_argument("run_dir", metavar="RUN_DIR")
    e.add_argument("--data", help="labelled data to evaluate on (default: the run's own data)")
    e.add_argument(
        "--labels", type=_csv, help="label budgets: fractions and/or N/class, e.g. 0.01,0.1,10/class"
    )
    e.add_argument("--seeds", type=int, help="number of seeded labelled subsets per budget")
    e.add_argument(
        "--protocol", type=_csv, help="any of knn,linear,finetune,scratch and pixels (images) or tfidf (text)"
    )
    e.add_argument("--device", choices=["auto", "cpu", "cuda"])
    e.add_argument("--quiet", action="store_true")
    e.add_argument("--no-report", action="store_true", help="do not (re)write RUN_DIR/report.html")
    e.add_argument(
        "overrides", nargs="*", metavar="key=value", help="override eval settings, e.g. eval.knn_k=20"
    )

    m = verbs.add_parser(
        "embed",
        help="write a data set's embeddings to a .npy file",
        description="Embed every image of a data set with a run's encoder: FILE.npy (N×D) and "
        "FILE.json (split, label and file name of each row).",
    )
    m.add_argument("run_dir", metavar="RUN_DIR")
    m.add_argument("--data", required=True)
    m.add_argument("--out", required=True, metavar="FILE.npy")
    m.add_argument("--device", choices=["auto", "cpu", "cuda"])
    m.add_argument("--quiet", action="store_true")
    m.add_argument(
        "overrides", nargs="*", metavar="key=value", help="how to read the data, e.g. data.image_size=32"
    )

    a = verbs.add_parser(
        "augment",
        help="save a grid of images and their augmented views (PNG)",
        description="See what the model sees: a PNG grid, one row per image, the original "
        "then each augmented view of the chosen pipeline.",
    )
    a.add_argument("--data", required=True)
    a.add_argument(
        "--preset",
        help="augmentation preset: simclr, simclr_cifar, byol, dino, mae, small "
        "(default: the method's recipe for this data)",
    )
    a.add_argument(
        "--method", default="simclr", help="whose recipe gives the pipeline when --preset is absent"
    )
    a.add_argument("--images", type=int, default=8, help="rows (images) in the grid (default 8)")
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--out", default="augment.png", metavar="FILE.png", help="default augment.png")
    a.add_argument(
        "overrides", nargs="*", metavar="key=value", help="change the pipeline, e.g. augment.blur_p=1"
    )

    b = verbs.add_parser(
        "ablate",
        help="pretrain without one augmentation at a time and compare",
        description="The augmentation ablation: short pretrainings with the full pipeline and "
        "without each named augmentation, then kNN and linear accuracy of each "
        "(table printed and saved as OUT/ablation.json).",
    )
    b.add_argument("--method", default="simclr")
    b.add_argument("--data", required=True)
    b.add_argument(
        "--drop",
        type=_csv,
        default=["crop", "color", "grayscale", "blur", "flip"],
        help="augmentations to remove one at a time: crop,color,grayscale,blur,solarize,flip "
        "(default crop,color,grayscale,blur,flip)",
    )
    b.add_argument("--epochs", type=int, help="epochs of each pretraining (default: the recipe's)")
    b.add_argument("--labels", type=_csv, help="label budgets (default: the recipe's)")
    b.add_argument("--seeds", type=int, help="labelled subsets per budget (default: the recipe's)")
    b.add_argument(
        "--out", help="directory of the runs and ablation.json (default runs/ablate-<method>-<data>)"
    )
    b.add_argument("--quiet", action="store_true")
    b.add_argument(
        "overrides", nargs="*", metavar="key=value", help="settings for every run, e.g. train.batch_size=128"
    )

    d = verbs.add_parser(
        "demo",
        help="pretrain on the built-in digits and evaluate with 1, 5, 10 labels per class",
        description="A complete run in about a minute on a laptop CPU: SimCLR on scikit-learn's "
        "digits, then the few-label table.",
    )
    d.add_argument("--out", default="runs/demo", help="run directory (default runs/demo)")
    d.add_argument("--quiet", action="store_true")
    d.add_argument(
        "overrides", nargs="*", metavar="key=value", help="change the recipe, e.g. train.epochs=50"
    )

    n = verbs.add_parser(
        "denoise",
        help="noise a text and print a BART run's reconstruction of it",
        description="Noise the text with the run's own noising functions, then decode the "
        "model's reconstruction (greedy).",
    )
    n.add_argument("run_dir", metavar="RUN_DIR")
    n.add_argument("text", metavar="TEXT")
    n.add_argument(
        "--no-noise", action="store_true", help="reconstruct the text as given (e.g. with your own <mask>s)"
    )
    n.add_argument("--seed", type=int, default=0, help="seed of the noise (default 0)")
    n.add_argument("--device", choices=["auto", "cpu", "cuda"])

    g = verbs.add_parser(
        "generate",
        help="sample text from a causal LM run",
        description="Continue a prompt by sampling from a causal language model run.",
    )
    g.add_argument("run_dir", metavar="RUN_DIR")
    g.add_argument("--prompt", default="", help="text to continue (default: none)")
    g.add_argument("--tokens", type=int, default=200, help="tokens to sample (default 200)")
    g.add_argument("--temperature", type=float, help="sampling temperature (default: the run's, 1.0)")
    g.add_argument(
        "--top-k", type=int, help="sample from the k most likely tokens (default: the run's; 0: all)"
    )
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--device", choices=["auto", "cpu", "cuda"])

    r = verbs.add_parser(
        "report",
        help="(re)write a run's report.html",
        description="Write RUN_DIR/report.html: one self-contained page (configuration, curves, "
        "evaluation, embedding map, retrieval, the method's pictures).",
    )
    r.add_argument("run_dir", metavar="RUN_DIR")
    r.add_argument("--device", choices=["auto", "cpu", "cuda"])

    c = verbs.add_parser(
        "compare",
        help="compare runs side by side (table and page)",
        description="Print a table comparing runs (accuracy per label budget, wall time) and write "
        "a page with it and their curves overlaid.",
    )
    c.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    c.add_argument("--out", default="comparison.html", metavar="FILE.html", help="default comparison.html")

    verbs.add_parser(
        "methods",
        help="list the methods with their family and paper",
        description="List the available self-supervised methods.",
    )
    return parser


OVERRIDE = re.compile(r"^[A-Za-z_]\w*\.[\w.]+=")
"""A ``section.key=value`` setting, which may stand anywhere after the verb."""
FREE_TEXT_VERBS = ("denoise", "generate")
"""Verbs whose positional arguments are the user's own text, never read as settings."""


def parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse ``argv``, taking ``key=value`` settings wherever they stand after the verb (argparse
    alone takes them only where the positional arguments end, and before a positional argument
    takes them for it), except as the value of an option (``--out a.b=c``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    verbs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    at = next((i for i, token in enumerate(argv) if token in verbs), None)
    if at is None or argv[at] in FREE_TEXT_VERBS:
        return parser.parse_args(argv)
    verb, options = argv[at], verbs[argv[at]]._option_string_actions
    settings, kept, value_next = [], [], False
    for token in argv[at + 1 :]:
        if not value_next and OVERRIDE.match(token):
            settings.append(token)
            continue
        kept.append(token)
        action = options.get(token) if token.startswith("-") else None
        value_next = action is not None and action.nargs != 0
    args = parser.parse_args(argv[: at + 1] + kept)
    if settings and not hasattr(args, "overrides"):
        parser.error(f"`selfsup {verb}` takes no key=value settings (got {settings[0]})")
    if settings:
        args.overrides = settings + list(args.overrides)
    return args


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parse(parser, argv)
    if args.verb is None:
        parser.print_help()
        return 2
    warnings.formatwarning = lambda message, category, *rest: f"selfsup: warning: {message}\n"
    from selfsup import distributed

    where = f" (process {distributed.rank()})" if distributed.launched() else ""
    if distributed.launched() and not distributed.is_main():
        warnings.filterwarnings(
            "ignore", module=r"selfsup\.data"
        )  # every process reads the same data: rank 0 says
    try:
        if distributed.launched() and not distributed.is_main() and args.verb not in DISTRIBUTED_VERBS:
            return 0  # under torchrun the other verbs run in the process of rank 0
        return _run(args)
    except SelfsupError as exc:
        print(f"selfsup: error{where}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"selfsup: interrupted{where}", file=sys.stderr)
        return 130
    finally:
        distributed.shutdown()


def _run(args: argparse.Namespace) -> int:
    from selfsup import api
    from selfsup.evaluate import format_table

    if args.verb == "pretrain":
        result = api.pretrain(
            args.method,
            args.data,
            out=args.out,
            backbone=args.backbone,
            epochs=args.epochs,
            batch_size=args.batch_size,
            seed=args.seed,
            device=args.device,
            config=args.config,
            overrides=args.overrides,
            resume=args.resume,
            overwrite=args.overwrite,
            skip_bad_images=args.skip_bad_images,
            progress=not args.quiet,
            report=not args.no_report,
            tensorboard=args.tensorboard,
        )
        if not result.saved:
            return 0
        print(
            f"final loss {result.final_loss:.4f} after {result.epochs} epoch{'s' if result.epochs != 1 else ''} "
            f"({result.seconds:.0f} s); "
            f"encoder in {result.run_dir}/encoder.safetensors"
        )
    elif args.verb == "evaluate":
        evaluation = api.evaluate(
            args.run_dir,
            data=args.data,
            labels=args.labels,
            seeds=args.seeds,
            protocols=args.protocol,
            device=args.device,
            overrides=args.overrides,
            progress=not args.quiet,
            report=not args.no_report,
        )
        print(format_table(evaluation))
        print(f"written to {args.run_dir}/eval.json")
    elif args.verb == "embed":
        out = api.embed(
            args.run_dir,
            args.data,
            args.out,
            device=args.device,
            overrides=args.overrides,
            progress=not args.quiet,
        )
        print(f"embeddings in {out} (row metadata in {out.with_suffix('.json')})")
    elif args.verb == "augment":
        out = api.augment_grid(
            args.data,
            args.out,
            method=args.method,
            preset=args.preset,
            images=args.images,
            seed=args.seed,
            overrides=args.overrides,
        )
        print(f"grid of images and their views in {out}")
    elif args.verb == "ablate":
        api.ablate(
            args.method,
            args.data,
            drop=args.drop,
            out=args.out,
            epochs=args.epochs,
            labels=args.labels,
            seeds=args.seeds,
            overrides=args.overrides,
            progress=not args.quiet,
        )
    elif args.verb == "denoise":
        result = api.denoise(
            args.run_dir, args.text, seed=args.seed, noise=not args.no_noise, device=args.device
        )
        print(f"noised:        {result['noised']}\nreconstructed: {result['reconstruction']}")
    elif args.verb == "generate":
        print(
            api.generate(
                args.run_dir,
                args.prompt,
                tokens=args.tokens,
                temperature=args.temperature,
                top_k=args.top_k,
                seed=args.seed,
                device=args.device,
            )
        )
    elif args.verb == "report":
        print(f"report in {api.report(args.run_dir, device=args.device)}")
    elif args.verb == "compare":
        out, table = api.compare(args.run_dirs, out=args.out)
        print(table)
        print(f"page in {out}")
    elif args.verb == "demo":
        api.demo(args.out, overrides=args.overrides, progress=not args.quiet)
    elif args.verb == "methods":
        rows = api.methods()
        width = max(len(r["method"]) for r in rows)
        fam = max(len(r["family"]) for r in rows)
        print(f"{'method':<{width}}  {'family':<{fam}}  paper")
        for r in rows:
            print(f"{r['method']:<{width}}  {r['family']:<{fam}}  {r['paper']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
