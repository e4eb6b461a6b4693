"""The `selfsup` command: builds its parser from :mod:`selfsup.verbs`, calls the verb's
:mod:`selfsup.api` function and prints what it returns."""

from __future__ import annotations

import argparse
import re
import sys
import warnings
from typing import Any

from selfsup import __version__
from selfsup.errors import SelfsupError
from selfsup.verbs import VERBS, Option, Verb


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line on stderr, exit code 2."""

    def error(self, message: str):
        self.exit(2, f"selfsup: error: {message} (see `{self.prog} --help`)\n")


def add_option(parser: argparse.ArgumentParser, option: Option) -> None:
    """Add one :class:`selfsup.verbs.Option` to ``parser``, as its description says."""
    settings: dict[str, Any] = {"help": option.help}
    if option.flag:  # a flag that sets a config key is None when absent: the recipe's value stands
        settings.update(action="store_true", default=None if option.key else False)
    else:
        given = {
            "type": option.type,
            "default": option.default,
            "choices": option.choices,
            "metavar": option.metavar,
            "nargs": option.nargs,
        }
        settings.update({name: value for name, value in given.items() if value is not None})
    if option.required:
        settings["required"] = True
    parser.add_argument(option.name, **settings)


def build_parser() -> argparse.ArgumentParser:
    """The parser of every verb of :data:`selfsup.verbs.VERBS`."""
    parser = OneLineParser(
        prog="selfsup", description="Self-supervised pretraining and few-label evaluation."
    )
    parser.add_argument("--version", action="version", version=f"selfsup {__version__}")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=OneLineParser)
    for verb in VERBS.values():
        sub = verbs.add_parser(verb.name, help=verb.help, description=verb.description)
        for option in verb.options:
            add_option(sub, option)
    return parser


OVERRIDE = re.compile(r"^[A-Za-z_]\w*\.[\w.]+=")
"""A ``section.key=value`` setting, which may stand anywhere after the verb."""


def parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse ``argv``, taking ``key=value`` settings wherever they stand after the verb (argparse
    alone takes them only where the positional arguments end, and before a positional argument
    takes them for it), except as the value of an option (``--out a.b=c``) and in the verbs whose
    positional arguments are free text."""
    argv = list(sys.argv[1:] if argv is None else argv)
    verbs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    at = next((i for i, token in enumerate(argv) if token in verbs), None)
    if at is None or VERBS[argv[at]].free_text:
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
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); returns the exit status: 0, 2 for
    an error (one line on stderr), 130 when interrupted."""
    parser = build_parser()
    args = parse(parser, argv)
    if args.verb is None:
        parser.print_help()
        return 2
    warnings.formatwarning = lambda message, category, *rest: f"selfsup: warning: {message}\n"
    from selfsup import distributed

    where = f" (process {distributed.rank()})" if distributed.launched() else ""
    follower = distributed.launched() and not distributed.is_main()
    if follower:  # every process reads the same data: rank 0 says
        warnings.filterwarnings("ignore", module=r"selfsup\.data")
    try:
        if follower and not VERBS[args.verb].distributed:
            return 0  # under torchrun the other verbs run in the process of rank 0
        return run(VERBS[args.verb], args)
    except SelfsupError as exc:
        print(f"selfsup: error{where}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"selfsup: interrupted{where}", file=sys.stderr)
        return 130
    finally:
        distributed.shutdown()


def run(verb: Verb, args: argparse.Namespace) -> int:
    """Call ``verb``'s api function with the parsed ``args`` and print what it returns; exit status 0."""
    from selfsup import api

    result = getattr(api, verb.api_function)(**verb.arguments(vars(args)))
    SHOW[verb.name](result, args)
    return 0


def _show_pretrain(result, args) -> None:
    if result.saved:
        plural = "s" if result.epochs != 1 else ""
        print(
            f"final loss {result.final_loss:.4f} after {result.epochs} epoch{plural} "
            f"({result.seconds:.0f} s); encoder in {result.run_dir}/encoder.safetensors"
        )


def _show_evaluate(evaluation: dict, args) -> None:
    from selfsup.evaluate import format_table

    print(format_table(evaluation))
    print(f"written to {args.run_dir}/eval.json")


def _show_ablate(ablation: dict, args) -> None:
    if ablation:  # empty in a torchrun process other than rank 0
        print(ablation["table"])
        saved = [ablation["file"], ablation["report"]] + (
            [ablation["figure"]] if "figure" in ablation else []
        )
        print("saved " + ", ".join(str(path) for path in saved))


def _show_demo(demo: dict, args) -> None:
    from selfsup.evaluate import format_table

    if not demo:  # a torchrun process other than rank 0
        return
    print(format_table(demo))
    print(
        f"wall time {demo['wall_seconds']:.0f} s (pretraining {demo['pretrain_seconds']:.0f} s, "
        f"{demo['pretrain_epochs']} epochs); peak memory {demo['peak_memory_mb']:.0f} MB"
    )
    print(
        f"run files in {demo['run_dir']}/ (report.html: open it in a browser; eval.json, metrics.jsonl, "
        "config.yaml, encoder.safetensors)"
    )


def _show_compare(compared: tuple, args) -> None:
    out, table = compared
    print(table)
    print(f"page in {out}")


def _show_methods(rows: list[dict[str, str]], args) -> None:
    width = max(len(r["method"]) for r in rows)
    family = max(len(r["family"]) for r in rows)
    print(f"{'method':<{width}}  {'family':<{family}}  paper")
    for r in rows:
        print(f"{r['method']:<{width}}  {r['family']:<{family}}  {r['paper']}")


SHOW = {
    "pretrain": _show_pretrain,
    "evaluate": _show_evaluate,
    "select": lambda picked, args: print(
        f"{picked['budget']} items picked by {picked['strategy']} ({picked['note']}) in {picked['csv']}: "
        f"fill in its label column, or import {picked['tasks']} into Label Studio with the interface "
        f"{picked['interface']}; the picks as pictures: {picked['page']}"
    ),
    "fit": lambda fitted, args: print(
        f"task model in {fitted['model_dir']} ({len(fitted['classes'])} classes; {fitted['protocol']}, "
        f"{fitted['semi']}): cross-validated accuracy on the labels "
        + (
            f"{fitted['validation_accuracy']:.3f}"
            if fitted["validation_accuracy"] is not None
            else "— (too few)"
        )
        + (f", test accuracy {fitted['test_accuracy']:.3f}" if fitted["test_accuracy"] is not None else "")
        + f"; page {fitted['page']}"
    ),
    "predict": lambda predicted, args: print(f"{predicted['items']} predictions in {predicted['out']}"),
    "embed": lambda out, args: print(f"embeddings in {out} (row metadata in {out.with_suffix('.json')})"),
    "augment": lambda out, args: print(f"grid of images and their views in {out}"),
    "ablate": _show_ablate,
    "demo": _show_demo,
    "denoise": lambda result, args: print(
        f"noised:        {result['noised']}\nreconstructed: {result['reconstruction']}"
    ),
    "generate": lambda text, args: print(text),
    "report": lambda path, args: print(f"report in {path}"),
    "compare": _show_compare,
    "methods": _show_methods,
    "export": lambda note, args: print(
        f"{note['format']} export in {note['path']} (how to load it: {note['path']}.json)"
    ),
}
"""What each verb prints of its api function's result (``args``: the parsed command line)."""


if __name__ == "__main__":
    sys.exit(main())
