import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import TINY, corrupt_bytes, make_image_folder
from selfsup.cli import main


def run_cli(args, capsys):
    try:
        code = main([str(a) for a in args])
    except SystemExit as exit_:  # argparse's own usage errors
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code, err, culprit):
    """Exit code 2, the error on one line, last; before it only selfsup's own lines (what it found),
    no traceback."""
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("selfsup: error:"), err
    assert all(
        line.startswith("selfsup: ") and not line.startswith("selfsup: error") for line in lines[:-1]
    ), err
    assert culprit in lines[-1]


def test_bad_inputs_give_one_line_errors(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # runs without --out go to ./runs/
    (tmp_path / "empty").mkdir()
    corrupt = make_image_folder(tmp_path / "corrupt", per_class=3)
    (corrupt / "cat" / "bad.png").write_bytes(corrupt_bytes())
    cases = [
        (["pretrain", "--data", tmp_path / "nope"], "nope"),
        (["pretrain", "--data", tmp_path / "empty"], "empty"),
        (["pretrain", "--data", corrupt], "bad.png"),
        (["pretrain", "--data", "digits", "--method", "nosuch"], "nosuch"),
        (["pretrain", "--data", "digits", "--backbone", "vgg99"], "vgg99"),
        (["pretrain", "--data", "digits", "--batch-size", "5000", "--out", tmp_path / "big"], "5000"),
        (["pretrain", "--data", "digits", "optim.nosuch=1"], "optim.nosuch"),
        (["pretrain", "--data", "digits", "notakeyvalue"], "notakeyvalue"),
        (["pretrain", "--data", "digits", "optim.lr=fast"], "optim.lr"),
        (["pretrain", "--data", "digits", "augment.local_views=4"], "multi-crop is for dino"),
        (["pretrain", "--data", "digits", "augment.preset=fancy"], "fancy"),
        (["pretrain", "--data", "digits", "augment.blur_p=[0.5,1.5]"], "augment.blur_p"),
        (["pretrain", "--data", "digits", "augment.blur_kernel=4"], "augment.blur_kernel"),
        (["pretrain", "--data", "digits", "--method", "siamese", "method.mining=soft"], "method.mining"),
        (["pretrain", "--data", "digits", "--method", "byol", "augment.views=3"], "exactly 2 views"),
        (["pretrain", "--data", "digits", "--method", "dino", "augment.views=3"], "method.global_views (2)"),
        (
            ["pretrain", "--data", "digits", "--method", "dino", "augment.local_views=-1"],
            "augment.local_views",
        ),
        (["pretrain", "--data", "digits", "--config", tmp_path / "missing.yaml"], "missing.yaml"),
        (["pretrain"], "--data"),
        (["evaluate", tmp_path / "norun"], "norun"),
    ]
    for args, culprit in cases:
        code, _, err = run_cli(args, capsys)
        assert_one_line_error(code, err, str(culprit))
    assert (
        not (tmp_path / "runs").exists() and not (tmp_path / "big").exists()
    )  # no empty run directories left


def test_invalid_label_budget_and_protocol(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert (
        run_cli(
            ["pretrain", "--data", "digits", "--epochs", "1", "--out", run_dir, "--quiet", *TINY], capsys
        )[0]
        == 0
    )
    code, _, err = run_cli(["evaluate", run_dir, "--labels", "0.1,lots"], capsys)
    assert_one_line_error(code, err, "lots")
    code, _, err = run_cli(["evaluate", run_dir, "--protocol", "knn,magic"], capsys)
    assert_one_line_error(code, err, "magic")


def test_skip_bad_images_warns_with_a_count(tmp_path, capsys):
    folder = make_image_folder(tmp_path / "pets", per_class=8, size=(8, 8))
    (folder / "cat" / "bad.png").write_bytes(corrupt_bytes())
    with pytest.warns(UserWarning, match="skipped 1 corrupt image.*cat/bad.png"):
        code, out, err = run_cli(
            [
                "pretrain",
                "--data",
                folder,
                "--skip-bad-images",
                "--epochs",
                "1",
                "--batch-size",
                "8",
                "--backbone",
                "small_cnn",
                "--out",
                tmp_path / "run",
                "--quiet",
                "model.width=4",
            ],
            capsys,
        )
    assert code == 0, err


def test_pretrain_evaluate_embed_from_the_command_line(tmp_path, capsys):
    run_dir = tmp_path / "run"
    code, out, err = run_cli(
        [
            "pretrain",
            "--method",
            "simclr",
            "--data",
            "digits",
            "--epochs",
            "1",
            "--seed",
            "3",
            "--device",
            "cpu",
            "--out",
            run_dir,
            *TINY,
        ],
        capsys,
    )
    assert code == 0, err
    assert "final loss" in out and "epoch 1/1" in err
    code, out, err = run_cli(
        ["evaluate", run_dir, "--labels", "5/class", "--seeds", "2", "--protocol", "knn,pixels"], capsys
    )
    assert code == 0, err
    assert "SSL + kNN" in out and "raw pixels" in out
    assert {r["protocol"] for r in json.loads((run_dir / "eval.json").read_text())["results"]} == {
        "knn",
        "pixels",
    }
    code, out, err = run_cli(["embed", run_dir, "--data", "digits", "--out", tmp_path / "emb.npy"], capsys)
    assert code == 0, err
    embeddings = np.load(tmp_path / "emb.npy")
    meta = json.loads((tmp_path / "emb.json").read_text())
    assert embeddings.shape == (1797, 32) and len(meta["label"]) == 1797
    assert meta["split"][0] == "train" and meta["split"][-1] == "test"


def test_methods_and_help(capsys):
    code, out, _ = run_cli(["methods"], capsys)
    assert code == 0 and "simclr" in out and "Chen et al. 2020" in out
    for verb in ("pretrain", "evaluate", "embed", "demo", "methods"):
        with pytest.raises(SystemExit) as info:
            main([verb, "--help"])
        assert info.value.code == 0
        assert "usage: selfsup " + verb in capsys.readouterr().out


def test_demo_runs_end_to_end_in_a_subprocess(tmp_path):
    """`python -m selfsup demo`, shortened with overrides, prints the table, wall time and files."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "selfsup",
            "demo",
            "--out",
            str(tmp_path / "demo"),
            "--quiet",
            "train.epochs=2",
            "eval.seeds=2",
            "eval.finetune_min_steps=5",
            "eval.finetune_epochs=2",
            *TINY,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    for text in (
        "SSL + linear",
        "SSL + kNN",
        "from scratch",
        "raw pixels",
        "1/class",
        "10/class",
        "wall time",
        "eval.json",
    ):
        assert text in result.stdout
    assert (tmp_path / "demo" / "eval.json").exists()


def test_augment_writes_a_grid_of_originals_and_views(tmp_path, capsys):
    from PIL import Image

    out = tmp_path / "grid.png"
    code, stdout, _ = run_cli(
        ["augment", "--data", "digits", "--preset", "byol", "--images", "3", "--out", out], capsys
    )
    assert code == 0 and "grid.png" in stdout
    grid = Image.open(out)
    # 3 rows and 3 columns (original + 2 views) of 64-px tiles (8-px digits × 8) with 2-px gutters
    assert grid.size == (3 * 66, 3 * 66)
    pixels = np.asarray(grid).astype(float)
    assert pixels[:, 66:].std() > 10  # the views are images, not blank tiles
    code, _, err = run_cli(["augment", "--data", "digits", "--preset", "fancy", "--out", out], capsys)
    assert_one_line_error(code, err, "fancy")
    code, _, err = run_cli(["augment", "--data", "digits", "--out", tmp_path / "grid.jpg"], capsys)
    assert_one_line_error(code, err, "grid.jpg")


def test_ablate_trains_the_full_pipeline_and_each_drop(tmp_path, capsys):
    out = tmp_path / "ablation"
    code, stdout, _ = run_cli(
        [
            "ablate",
            "--data",
            "digits",
            "--drop",
            "crop,color,blur",
            "--epochs",
            "2",
            "--labels",
            "5/class",
            "--seeds",
            "1",
            "--out",
            out,
            "--quiet",
            *TINY,
        ],
        capsys,
    )
    assert code == 0
    report = json.loads((out / "ablation.json").read_text())
    rows = {r["drop"]: r for r in report["rows"]}
    assert set(rows) == {"full", "crop", "color", "blur"}
    assert rows["blur"]["note"] == "not in this pipeline"  # the digits preset has no blur
    for name in ("full", "crop", "color"):
        assert {r["protocol"] for r in rows[name]["results"]} == {"knn", "linear"}
        assert (out / name / "encoder.safetensors").exists()
    assert rows["crop"]["results"][0]["seeds"] == 1
    line = next(line for line in stdout.splitlines() if line.startswith("| without crop"))
    assert "(+" in line or "(-" in line  # the change from the full pipeline
    code, _, err = run_cli(["ablate", "--data", "digits", "--drop", "crop,rotate"], capsys)
    assert_one_line_error(code, err, "rotate")


def test_each_option_is_a_keyword_of_its_api_function():
    """The options are written once (selfsup.verbs): each fills a keyword parameter of its verb's
    api function, by the same name unless it says otherwise."""
    import inspect

    from selfsup import api
    from selfsup.verbs import VERBS

    for verb in VERBS.values():
        parameters = inspect.signature(getattr(api, verb.api_function)).parameters
        missing = [o.keyword for o in verb.options if o.keyword not in parameters]
        assert missing == [], f"api.{verb.api_function} lacks {missing} of `selfsup {verb.name}`"


def test_the_parser_and_the_api_flags_come_from_one_description(monkeypatch):
    from selfsup import api, cli
    from selfsup.verbs import EVALUATE, PRETRAIN

    args = cli.parse(cli.build_parser(), ["pretrain", "--data", "digits", "--epochs", "3", "optim.lr=0.1"])
    arguments = PRETRAIN.arguments(vars(args))
    assert arguments["epochs"] == 3 and arguments["overrides"] == ["optim.lr=0.1"]
    assert arguments["progress"] is True and arguments["report"] is True and arguments["resume"] is False
    assert arguments["skip_bad_images"] is None and arguments["tensorboard"] is None  # the recipe's stand
    args = cli.parse(cli.build_parser(), ["evaluate", "run", "--protocol", "knn, linear", "--quiet"])
    assert EVALUATE.arguments(vars(args))["protocols"] == ["knn", "linear"]
    assert EVALUATE.arguments(vars(args))["progress"] is False

    seen = {}

    def resolve(method, data, **settings):
        seen.update(settings["flags"])
        raise SystemExit("resolved")

    monkeypatch.setattr(api, "resolve", resolve)
    with pytest.raises(SystemExit, match="resolved"):
        api.pretrain("simclr", "digits", epochs=3, backbone="small_cnn", tensorboard=True, progress=False)
    assert seen == {
        "model.backbone": "small_cnn",
        "train.epochs": 3,
        "train.batch_size": None,
        "train.seed": None,
        "train.device": None,
        "data.skip_bad_images": None,
        "train.tensorboard": True,
    }


def test_the_command_prints_what_the_api_returns(tmp_path, capsys, monkeypatch):
    """The api returns values; the command prints them (here the demo's lines, without training)."""
    from selfsup import api

    evaluation = {"results": [{"protocol": "knn", "labels": "1/class", "mean": 0.5, "std": 0.1, "seeds": 2}]}
    demo = {
        **evaluation,
        "wall_seconds": 61.2,
        "peak_memory_mb": 812.0,
        "pretrain_seconds": 40.4,
        "pretrain_epochs": 30,
        "run_dir": tmp_path / "demo",
    }
    monkeypatch.setattr(api, "demo", lambda out, overrides, progress: demo)
    code, out, _ = run_cli(["demo", "--quiet"], capsys)
    assert code == 0
    assert out.splitlines()[-2:] == [
        "wall time 61 s (pretraining 40 s, 30 epochs); peak memory 812 MB",
        f"run files in {tmp_path / 'demo'}/ (report.html: open it in a browser; eval.json, metrics.jsonl, "
        "config.yaml, encoder.safetensors)",
    ]
    assert "SSL + kNN" in out and "0.500 ± 0.100" in out


def test_ablate_pairs_trains_each_augmentation_alone_and_in_pairs_and_draws_the_heat_map(tmp_path, capsys):
    out = tmp_path / "pairs"
    code, stdout, _ = run_cli(
        ["ablate", "--data", "digits", "--pairs", "crop,color", "--epochs", "1", "--labels", "5/class"]
        + ["--seeds", "1", "--out", out, "--quiet", *TINY],
        capsys,
    )
    assert code == 0
    study = json.loads((out / "ablation.json").read_text())
    assert [r["run"] for r in study["rows"]] == ["none", "crop", "crop+color", "color"]
    augment = {r["run"]: r["augment"] for r in study["rows"]}
    assert augment["none"]["crop_scale"] == [1.0, 1.0] and augment["none"]["jitter_p"] == 0
    assert (
        augment["crop"]["crop_scale"] == [0.4, 1.0] and augment["crop"]["jitter_p"] == 0
    )  # the recipe's crop
    assert augment["color"]["crop_scale"] == [1.0, 1.0] and augment["color"]["jitter_p"] == 0.8
    linear = study["matrix"]["linear"]
    assert linear[0][1] == linear[1][0] and all(0 < v <= 1 for row in linear for v in row)
    assert (out / "ablation.png").stat().st_size > 1000 and (out / "report.html").exists()
    assert "| crop |" in stdout and "no augmentation at all" in stdout


def test_pairs_switch_on_what_the_recipe_has_off_and_everything_else_off():
    from selfsup.methods.recipes import build_config
    from selfsup.studies import pair_overrides

    full = build_config("simclr", small_images=True)  # the digits preset: crop and colour only
    config = build_config("simclr", small_images=True, overrides=pair_overrides(("blur", "flip"), full))
    a = config.augment
    assert a.blur_p == [0.5] and a.flip_p == 0.5  # SimCLR's ImageNet values
    assert tuple(a.crop_scale) == (1.0, 1.0) and a.jitter_p == 0 and a.grayscale_p == 0


def test_ablate_sweep_trains_one_run_per_value_and_draws_a_curve(tmp_path, capsys):
    out = tmp_path / "sweep"
    code, stdout, _ = run_cli(
        ["ablate", "--data", "digits", "--sweep", "augment.brightness=0,0.8", "--epochs", "1"]
        + ["--labels", "0.5", "--seeds", "1", "--subset", "300", "--out", out, "--quiet", *TINY],
        capsys,
    )
    assert code == 0
    study = json.loads((out / "ablation.json").read_text())
    assert [r["run"] for r in study["rows"]] == ["0", "0.8"]
    # pretrained on the subset; the probe's half of the labels drawn from the whole split
    assert study["pretrain_images"] == 300
    assert [r["labelled_images"] for r in study["rows"][0]["results"]] == [673, 673]
    assert [r["augment"]["brightness"] for r in study["rows"]] == [0, 0.8]
    assert (out / "ablation.png").exists() and "| augment.brightness |" in stdout


@pytest.mark.parametrize(
    "options, message",
    [
        (["--pairs", "crop,rotate"], "rotate"),
        (["--pairs", "crop,crop"], "distinct"),
        (["--pairs", "crop,color", "--drop", "blur"], "one of --drop, --pairs and --sweep"),
        (["--sweep", "augment.brightness"], "KEY=V1,V2"),
        (["--sweep", "augment.brightness=0.4"], "two values"),
        (["--sweep", "augment.shine=0,1"], "shine"),
        (["--subset", "5"], "--subset must lie between"),
        (["--subset", "100000"], "--subset must lie between"),
    ],
)
def test_bad_ablate_studies_are_one_line_errors(options, message, tmp_path, capsys):
    code, _, err = run_cli(["ablate", "--data", "digits", "--out", tmp_path, *options], capsys)
    assert_one_line_error(code, err, message)


def test_sweep_values_keep_commas_inside_brackets():
    from selfsup.studies import parse_sweep

    assert parse_sweep("augment.crop_scale=[0.08,1],[0.5, 1]") == (
        "augment.crop_scale",
        ["[0.08,1]", "[0.5, 1]"],
    )
