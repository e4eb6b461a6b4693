"""report.html after pretraining and evaluation, `selfsup report`, `selfsup compare`, TensorBoard,
and the page in a real headless browser (Debian's chromium)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import TINY
from selfsup import api, cli
from selfsup.errors import ConfigError, SelfsupError
from test_text import TINY_TEXT, corpus, write_csv

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(autouse=True)
def reports_on(monkeypatch):
    monkeypatch.setenv("SELFSUP_REPORT", "1")


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory) -> Path:
    """A short SimCLR run on the digits, evaluated with kNN and the linear probe: its report."""
    import os

    os.environ["SELFSUP_REPORT"] = "1"
    try:
        out = tmp_path_factory.mktemp("report") / "simclr"
        api.pretrain("simclr", "digits", out=out, epochs=3, overrides=TINY, progress=False)
        api.evaluate(out, labels=["5/class"], seeds=2, protocols=["knn", "linear"], progress=False)
    finally:
        os.environ["SELFSUP_REPORT"] = "0"
    return out


def images_of(page: str) -> list[str]:
    return re.findall(r"<img[^>]*src=\"([^\"]*)\"", page)


def test_pretraining_and_evaluation_write_a_self_contained_report(digits_run):
    page = (digits_run / "report.html").read_text()
    for section in (
        "selfsup: simclr on digits",
        "pretraining wall time",
        "peak memory",
        "Training curves",
        "Evaluation",
        "SSL + kNN",
        "5/class labels",
        "Embedding map",
        "t-SNE",
        "Nearest neighbours",
        "Augmented views",
        "configuration (config.yaml)",
    ):
        assert section in page, section
    sources = images_of(page)
    assert len(sources) == 4  # curves, map, retrieval, views
    assert all(src.startswith("data:image/png;base64,") for src in sources)
    assert not re.search(r"(src|href)=\"(http|/|file:)", page)  # nothing outside the file
    run = json.loads((digits_run / "run.json").read_text())
    assert run["seconds"] > 0 and run["peak_memory_mb"] > 0 and run["machine"]["cpu_count"] >= 1
    assert (run["train_items"], run["test_items"]) == (1347, 450)
    epoch = json.loads((digits_run / "metrics.jsonl").read_text().splitlines()[-1])
    assert epoch["embedding_dim"] == 32 and epoch["projection_dim"] == 16  # for the 1/√D line


@pytest.mark.skipif(
    CHROMIUM is None,
    reason="no chromium here: `make test` installs Debian's chromium package where it can (root and apt-get)",
)
def test_the_report_loads_in_a_real_browser_without_errors_and_shows_every_image(digits_run, tmp_path):
    """Chromium (headless) loads a copy of the page with a probe that records console errors and
    failed loads, and each image's decoded and rendered size, into the DOM it then dumps."""
    probe = """<script>
      window.__errors = [];
      addEventListener("error",
        e => __errors.push(String(e.message || (e.target && e.target.src || "").slice(0, 40))), true);
      for (const level of ["error", "warn"]) { const f = console[level];
        console[level] = (...a) => { __errors.push(a.join(" ")); f.apply(console, a); }; }
      addEventListener("load", () => document.body.setAttribute("data-probe", JSON.stringify({
        errors: __errors,
        images: [...document.images].map(i => [i.complete, i.naturalWidth, i.getBoundingClientRect().width,
                                              i.getBoundingClientRect().height])})));
    </script>"""
    copy = tmp_path / "report.html"
    copy.write_text((digits_run / "report.html").read_text().replace("<head>", "<head>" + probe, 1))
    result = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--enable-logging=stderr",
            "--virtual-time-budget=10000",
            "--dump-dom",
            copy.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    found = re.search(r'data-probe="([^"]*)"', result.stdout)
    assert found, result.stderr[-2000:]
    probe_result = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert probe_result["errors"] == []
    assert "CONSOLE" not in result.stderr  # chromium logs page console messages this way
    assert len(probe_result["images"]) == 4
    for complete, natural_width, width, height in probe_result["images"]:
        assert complete and natural_width > 0 and width > 0 and height > 0


def test_report_verb_rewrites_the_page_and_compare_puts_runs_side_by_side(digits_run, tmp_path, capsys):
    (digits_run / "report.html").unlink()
    assert cli.main(["report", str(digits_run)]) == 0
    assert (digits_run / "report.html").exists()

    other = tmp_path / "byol"
    api.pretrain(
        "byol",
        "digits",
        out=other,
        epochs=2,
        overrides=TINY + ["method.proj_hidden_dim=32", "method.pred_hidden_dim=32"],
        progress=False,
        report=False,
    )
    assert not (other / "report.html").exists()
    out = tmp_path / "cmp.html"
    capsys.readouterr()
    assert cli.main(["compare", str(digits_run), str(other), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| simclr | simclr | digits | 3 |" in printed and "| byol | byol | digits | 2 |" in printed
    assert "SSL + kNN 5/class" in printed and "—" in printed  # the byol run has no evaluation
    page = out.read_text()
    assert "comparison of runs" in page and len(images_of(page)) == 1


def test_bad_report_and_compare_input_is_a_clear_error(tmp_path, capsys):
    assert cli.main(["report", str(tmp_path)]) == 2
    assert "is not a run directory (no config.yaml)" in capsys.readouterr().err
    assert cli.main(["compare", str(tmp_path / "nope")]) == 2
    assert "is not a run directory" in capsys.readouterr().err


def test_barlow_twins_report_shows_the_cross_correlation_matrix(tmp_path):
    out = tmp_path / "bt"
    api.pretrain(
        "barlow_twins", "digits", out=out, epochs=2, overrides=TINY + ["method.proj_dim=32"], progress=False
    )
    page = (out / "report.html").read_text()
    assert "Cross-correlation of the two views" in page and "Mean of the diagonal" in page


def test_generative_and_text_reports_show_their_pictures_and_examples(tmp_path):
    dae = tmp_path / "dae"
    api.pretrain(
        "dae",
        "digits",
        out=dae,
        epochs=1,
        overrides=["model.width=8", "method.decoder_width=8", "train.pictures=2"],
        progress=False,
    )
    page = (dae / "report.html").read_text()
    assert "The method's own pictures" in page and "<h3>reconstructions</h3>" in page

    data = write_csv(tmp_path / "news.csv", [(str(1 + i % 2), text) for i, text in enumerate(corpus(80))])
    lm = tmp_path / "lm"
    api.pretrain("causal_lm", data, out=lm, epochs=1, overrides=TINY_TEXT, progress=False)
    page = (lm / "report.html").read_text()
    assert "<h3>samples</h3>" in page and "query 1" in page and "nats per token" in page
    assert "Augmented views" not in page


def test_report_of_a_run_whose_data_moved_says_so(tmp_path):
    from conftest import make_image_folder

    folder = make_image_folder(tmp_path / "imgs", per_class=20)
    out = tmp_path / "run"
    api.pretrain(
        "simclr",
        str(folder),
        out=out,
        epochs=1,
        overrides=TINY + ["train.batch_size=16"],
        progress=False,
        report=False,
    )
    shutil.rmtree(folder)
    page = api.report(out).read_text()
    assert "could not be loaded again" in page and "Training curves" in page


def test_tensorboard_logs_the_epoch_metrics_or_says_what_to_install(tmp_path):
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match="pip install 'selfsup\\[tensorboard\\]'"):
            api.pretrain(
                "simclr",
                "digits",
                out=tmp_path / "tb",
                epochs=1,
                overrides=TINY,
                progress=False,
                tensorboard=True,
            )
        return
    api.pretrain(
        "simclr",
        "digits",
        out=tmp_path / "tb",
        epochs=2,
        overrides=TINY,
        progress=False,
        report=False,
        tensorboard=True,
    )
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "tb" / "tensorboard"))
    events.Reload()
    assert {"loss", "lr", "embedding_std", "embedding_rank"} <= set(events.Tags()["scalars"])
    assert [e.step for e in events.Scalars("loss")] == [1, 2]


def test_a_failing_report_is_a_warning_not_a_failed_run(tmp_path, monkeypatch):
    def broken(run_dir, device=None):
        raise RuntimeError("no plots today")

    monkeypatch.setattr(api, "write_report", broken)
    with pytest.warns(
        UserWarning, match="report.html was not written .RuntimeError: no plots today.; `selfsup report"
    ):
        result = api.pretrain(
            "simclr", "digits", out=tmp_path / "r", epochs=1, overrides=TINY, progress=False
        )
    assert (result.run_dir / "encoder.safetensors").exists()
    with pytest.raises(SelfsupError):
        api.compare([])


def test_loss_terms_are_logged_per_epoch_and_drawn(tmp_path):
    out = tmp_path / "vicreg"
    result = api.pretrain(
        "vicreg", "digits", out=out, epochs=1, overrides=TINY + ["method.proj_dim=32"], progress=False
    )
    epoch = result.history[-1]
    weighted = 25 * epoch["invariance_loss"] + 25 * epoch["variance_loss"] + epoch["covariance_loss"]
    assert weighted == pytest.approx(epoch["loss"], rel=1e-4)
    assert json.loads((out / "metrics.jsonl").read_text().splitlines()[0]).keys() >= {"covariance_loss", "lr"}
