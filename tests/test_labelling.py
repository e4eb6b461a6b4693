"""Choosing what to label and reading the labels back: each strategy against an independent
reference written from its paper and official code, next rounds, labels files (CSV, TSV, Label
Studio's exports) and their errors, budgets a user can draw, and the `select` verb end to end."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans

from conftest import TINY_TEXT, make_image_folder, quick_run
from selfsup import api
from selfsup.data import load_data
from selfsup.errors import ConfigError, DataError
from selfsup.evaluate.budgets import check_count, parse_budget, select_labelled
from selfsup.labelling import strategies
from selfsup.labelling.labels import read_labels
from selfsup.labelling.strategies import kcenter, l2_normalise, pick, probcover, purity_radius, typiclust
from test_cli import assert_one_line_error, run_cli

TINY = ["model.width=8", "train.batch_size=256", "train.precision=fp32"]


def blobs(sizes=(40, 30, 25, 12, 4), dim=8, seed=0) -> np.ndarray:
    """Gaussian clusters of ``sizes`` around random centres, L2-normalised (what strategies see)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(sizes), dim)) * 3
    points = np.concatenate([c + rng.normal(size=(n, dim)) for c, n in zip(centres, sizes)])
    return l2_normalise(points[rng.permutation(len(points))])


def squared_distances(x: np.ndarray) -> np.ndarray:
    return ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)


# ---- each strategy against an independent reference -----------------------------------------------


def reference_typiclust(x: np.ndarray, budget: int, labelled: list[int], seed: int) -> list[int]:
    """avihu111/TypiClust, deep-al/pycls/al/typiclust.py, with brute-force neighbours (faiss's
    IndexFlatL2 returns squared distances; ``KMeans`` with the 10 starts that were scikit-learn's
    default when it was written)."""
    clusters = min(len(labelled) + budget, 500)
    ids = KMeans(n_clusters=clusters, random_state=seed, n_init=10).fit_predict(x)
    sizes = np.bincount(ids, minlength=clusters)
    existing = np.bincount(ids[labelled], minlength=clusters) if labelled else np.zeros(clusters, int)
    kept = [c for c in range(clusters) if sizes[c] > 5]
    order = sorted(kept, key=lambda c: (existing[c], -sizes[c], c))
    free = np.ones(len(x), bool)
    free[labelled] = False
    picked = []
    for i in range(budget):
        members = np.flatnonzero((ids == order[i % len(order)]) & free)
        k = min(20, len(members) // 2)
        d = squared_distances(x[members])
        mean = np.sort(d, axis=1)[:, 1 : k + 1].mean(axis=1)  # column 0: the item itself
        best = members[np.argmax(1 / (mean + 1e-5))]
        picked.append(int(best))
        free[best] = False
    return picked


@pytest.mark.parametrize("labelled", [[], [0, 1, 2]])
def test_typiclust_picks_what_the_official_algorithm_picks(labelled):
    x = blobs()
    assert typiclust(x, 6, labelled, seed=1).rows.tolist() == reference_typiclust(x, 6, labelled, 1)


def reference_probcover(x: np.ndarray, budget: int, labelled: list[int], delta: float) -> list[int]:
    """avihu111/TypiClust, deep-al/pycls/al/prob_cover.py: edges x -> y where ‖x − y‖ < δ; the
    labelled items' out-neighbours covered; then the highest out-degree among uncovered targets."""
    edges = {(i, j) for i, j in zip(*np.nonzero(np.sqrt(squared_distances(x)) < delta))}
    covered = {j for i, j in edges if i in set(labelled)}
    edges = {(i, j) for i, j in edges if j not in covered}
    picked = []
    for _ in range(budget):
        degrees = np.bincount([i for i, _ in edges], minlength=len(x))
        best = int(degrees.argmax())
        new = {j for i, j in edges if i == best}
        edges = {(i, j) for i, j in edges if j not in new}
        picked.append(best)
    return picked


@pytest.mark.parametrize("labelled", [[], [3, 4]])
def test_probcover_picks_what_the_official_greedy_cover_picks(labelled):
    x = blobs()
    found = probcover(x, 4, labelled, seed=0, delta=0.5)
    assert found.rows.tolist() == reference_probcover(x, 4, labelled, 0.5)
    assert "δ = 0.500 (given)" in found.note


def test_probcovers_radius_is_the_largest_of_the_purity_asked_for():
    x = blobs()
    labels = KMeans(n_clusters=5, random_state=0, n_init="auto").fit_predict(x)
    delta = purity_radius(x, labels, 0.95, seed=0)
    d = np.sqrt(squared_distances(x))
    other = np.where(labels[:, None] != labels[None], d, np.inf).min(axis=1)  # nearest of another class

    def purity(radius: float) -> float:
        return float((other >= radius).mean())  # a ball is pure while no other class lies inside

    assert purity(delta) >= 0.95 and purity(np.nextafter(delta, 10, dtype=np.float32) + 1e-6) < 0.95


def test_probcover_never_repeats_once_everything_is_covered():
    x = blobs()
    found = probcover(x, 60, [], seed=0, delta=1.5)  # a few balls cover everything
    assert len(set(found.rows.tolist())) == 60
    assert "k-centre steps" in found.note and "coverage 100%" in found.note


def reference_kcenter(x: np.ndarray, budget: int, labelled: list[int], first: int) -> list[int]:
    d = np.sqrt(squared_distances(x))
    centres = list(labelled) or [first]
    picked = [] if labelled else [first]
    while len(picked) < budget:
        best = int(d[:, centres].min(axis=1).argmax())
        centres.append(best)
        picked.append(best)
    return picked


@pytest.mark.parametrize("labelled", [[], [5, 6, 7]])
def test_kcenter_is_the_greedy_core_set(labelled):
    x = blobs()
    first = int(np.random.default_rng(2).integers(len(x)))  # the seeded first centre
    assert kcenter(x, 5, labelled, seed=2).rows.tolist() == reference_kcenter(x, 5, labelled, first)


@pytest.mark.parametrize("strategy", ["typiclust", "probcover", "kcenter", "random"])
def test_a_next_round_never_repeats_an_item_and_the_seed_is_kept(strategy):
    x = blobs()
    first = pick(strategy, x, 8, seed=3)
    again = pick(strategy, x, 8, seed=3)
    assert first.rows.tolist() == again.rows.tolist() and len(set(first.rows.tolist())) == 8
    second = pick(strategy, x, 10, labelled=first.rows, seed=3)
    assert not set(second.rows.tolist()) & set(first.rows.tolist()) and len(set(second.rows.tolist())) == 10


def test_typiclust_starts_with_the_clusters_no_label_covers():
    x = blobs(sizes=(40, 40, 40, 40), seed=4)
    ids = KMeans(n_clusters=4 + 2, random_state=0, n_init=10).fit_predict(x)  # labelled + budget clusters
    covered = sorted(set(ids[:60].tolist()))[:2]
    labelled = [int(np.flatnonzero(ids == c)[0]) for c in covered]
    found = typiclust(x, 4, labelled, seed=0)
    assert not set(found.cluster.tolist()) & set(covered)


def test_strategy_errors_are_one_line():
    x = blobs()
    with pytest.raises(ConfigError, match="unknown strategy 'best'"):
        pick("best", x, 3)
    with pytest.raises(ConfigError, match="--budget 200 is more than the 111 items"):
        pick("typiclust", x, 200)
    with pytest.raises(ConfigError, match="--budget must be at least 1"):
        pick("random", x, 0)


def test_large_pools_use_samples_and_mini_batches(monkeypatch):
    monkeypatch.setattr(strategies, "TYPICALITY_ITEMS", 20)
    monkeypatch.setattr(strategies, "PROBCOVER_ITEMS", 50)
    monkeypatch.setattr(strategies, "FULL_KMEANS_ITEMS", 50)
    x = blobs()
    assert "typicality on samples of 20 items" in typiclust(x, 3).note
    assert "graph on a sample of 50 of the 111 items" in probcover(x, 3).note


# ---- budgets a user can draw ---------------------------------------------------------------------------


def test_a_whole_number_is_a_count_of_items_and_a_decimal_a_fraction():
    assert parse_budget("1").count == 1 and parse_budget("20").count == 20
    assert parse_budget("1.0").fraction == 1.0 and parse_budget("0.01").fraction == 0.01
    assert parse_budget("5/class").per_class == 5
    for bad in ("0", "2.5", "x"):
        with pytest.raises(ConfigError, match="invalid label budget"):
            parse_budget(bad)
    with pytest.raises(ConfigError, match="asks for 30 items; the training split has 20 labelled"):
        check_count(parse_budget("30"), 20)
    with pytest.raises(ConfigError, match="is a count of items: pick them with a strategy"):
        select_labelled(torch.tensor([0, 1] * 5), parse_budget("3"), seed=0)


def test_evaluate_draws_random_counts_as_select_does(digits_run):
    splits = load_data("digits")
    pool = splits.train.labelled_index()
    evaluation = api.evaluate(
        digits_run, labels=["7"], seeds=1, protocols=["knn"], progress=False, report=False
    )
    picked = api.select(
        digits_run, budget=7, strategy="random", seed=0, out=digits_run / "r.csv", progress=False
    )
    expected = sorted(
        int(splits.train.indices()[pool[r]])
        for r in strategies.random_picks(np.empty((len(pool), 0)), 7).rows
    )
    assert sorted(picked["index"]) == expected and evaluation["results"][0]["labelled_images"] == 7


# ---- item identity -------------------------------------------------------------------------------------


def test_items_keep_their_index_across_the_held_out_split(tmp_path):
    folder = make_image_folder(tmp_path / "pets", per_class=10)
    splits = load_data(folder)
    train, test = splits.train.indices().tolist(), splits.test.indices().tolist()
    assert sorted(train + test) == list(range(20)) and not set(train) & set(test)
    names = splits.train.names + splits.test.names
    assert dict(zip(train + test, names)) == dict(zip(range(20), sorted(names)))  # the store's order
    digits = load_data("digits")
    assert sorted(digits.train.indices().tolist() + digits.test.indices().tolist()) == list(range(1797))


# ---- select, then the labels come back ------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("labelling") / "run"
    api.pretrain("simclr", "digits", out=out, epochs=1, overrides=TINY, progress=False, report=False)
    return out


def label(picks_csv, out, truth) -> list[dict]:
    rows = list(csv.DictReader(open(picks_csv)))
    for row in rows:
        row["label"] = truth(row)
    with open(out, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=rows[0].keys())
        writer.writeheader()
        writer.writerows(rows)
    return rows


def digit_label(row) -> str:
    from sklearn.datasets import load_digits

    return str(load_digits().target[int(row["index"])])


def test_select_writes_the_picks_their_tasks_and_page(digits_run, tmp_path, capsys):
    code, out, _ = run_cli(
        ["select", digits_run, "--budget", "12", "--out", tmp_path / "p.csv", "--quiet"], capsys
    )
    assert code == 0 and "12 items picked by typiclust" in out
    rows = list(csv.DictReader(open(tmp_path / "p.csv")))
    assert list(rows[0]) == ["rank", "index", "cluster", "score", "label"] and len(rows) == 12
    assert all(r["label"] == "" for r in rows)
    tasks = json.loads((tmp_path / "p.labelstudio.json").read_text())
    assert [t["data"]["index"] for t in tasks] == [int(r["index"]) for r in rows]
    assert tasks[0]["data"]["image"].startswith("data:image/png;base64,")
    assert '<Choices name="label" toName="image"' in (tmp_path / "p.labelstudio.xml").read_text()
    assert (tmp_path / "p.html").read_text().count("<img") >= 1


def test_the_csv_filled_in_comes_back_and_a_next_round_complements_it(digits_run, tmp_path):
    api.select(digits_run, budget=10, out=tmp_path / "p.csv", progress=False)
    rows = label(tmp_path / "p.csv", tmp_path / "labelled.csv", digit_label)
    splits = load_data("digits")
    labels = read_labels(tmp_path / "labelled.csv", splits)
    assert splits.train.indices()[labels.rows].tolist() == [int(r["index"]) for r in rows]
    second = api.select(
        digits_run, budget=10, labelled=tmp_path / "labelled.csv", out=tmp_path / "q.csv", progress=False
    )
    assert not set(second["index"]) & {int(r["index"]) for r in rows}


def test_label_studio_exports_come_back(digits_run, tmp_path):
    api.select(digits_run, budget=4, out=tmp_path / "p.csv", progress=False)
    tasks = json.loads((tmp_path / "p.labelstudio.json").read_text())
    exported = []
    for i, task in enumerate(tasks):
        choice = lambda name, when: {  # noqa: E731
            "result": [{"type": "choices", "from_name": "label", "value": {"choices": [name]}}],
            "updated_at": when,
            "was_cancelled": False,
        }
        annotations = [choice("old", "2026-01-01"), choice(str(i % 2), "2026-02-01")]
        if i == 3:
            annotations = [{**choice("9", "2026-03-01"), "was_cancelled": True}]  # skipped: not labelled
        exported.append(
            {"id": i + 1, "data": {**task["data"], "image": "/data/upload/x.png"}, "annotations": annotations}
        )
    (tmp_path / "export.json").write_text(json.dumps(exported))
    labels = read_labels(tmp_path / "export.json", load_data("digits"))
    assert labels.names == ["0", "1", "0"] and len(labels.rows) == 3
    minimal = [{"index": t["data"]["index"], "image": "x", "label": str(i % 2)} for i, t in enumerate(tasks)]
    (tmp_path / "min.json").write_text(json.dumps(minimal))
    assert read_labels(tmp_path / "min.json", load_data("digits")).names == ["0", "1", "0", "1"]


@pytest.mark.parametrize(
    "body, message",
    [
        ("index,label\n99999,3\n", "1 item(s) not in digits: index 99999"),
        ("index,label\n{test},3\n", "held-out test split"),
        ("index,label\n{train},3\n{train},4\n", "labelled more than once: index {train}"),
        ("path,label\ncat/1.png,3\n", "items are named by path, but digits has no files"),
        ("name,kind\nx,3\n", "needs a header with a 'path' or 'index' column and a 'label' column"),
    ],
)
def test_labels_files_that_do_not_fit_the_data_are_one_line_errors(
    digits_run, tmp_path, capsys, body, message
):
    splits = load_data("digits")
    values = {"train": int(splits.train.indices()[0]), "test": int(splits.test.indices()[0])}
    (tmp_path / "l.csv").write_text(body.format(**values))
    code, _, err = run_cli(["evaluate", digits_run, "--labelled", tmp_path / "l.csv", "--quiet"], capsys)
    assert_one_line_error(code, err, message.format(**values))


def test_evaluate_scores_exactly_the_labels_given_even_with_classes_missing(digits_run, tmp_path):
    splits = load_data("digits")
    train = splits.train
    ones = torch.nonzero(train.labels == 1).flatten()[:3].tolist() + [
        int(torch.nonzero(train.labels == 7)[0])
    ]
    with open(tmp_path / "l.csv", "w") as handle:
        handle.write(
            "index,label\n" + "".join(f"{int(train.indices()[r])},{train.labels[r].item()}\n" for r in ones)
        )
    evaluation = api.evaluate(
        digits_run,
        labelled=tmp_path / "l.csv",
        protocols=["knn", "linear", "pixels"],
        progress=False,
        report=False,
    )
    rows = {r["protocol"]: r for r in evaluation["results"]}
    assert set(rows) == {"knn", "linear", "pixels"} and all(r["labelled_images"] == 4 for r in rows.values())
    assert rows["linear"]["probe"][0]["selection"].startswith("default")  # 3 + 1: nothing to cross-validate
    assert all(0 < r["mean"] < 0.3 for r in rows.values())  # two classes of ten
    (tmp_path / "bad.csv").write_text(f"index,label\n{int(train.indices()[0])},eleven\n")
    with pytest.raises(DataError, match="'eleven' are not classes of the data"):
        api.evaluate(
            digits_run, labelled=tmp_path / "bad.csv", protocols=["knn"], progress=False, report=False
        )


def test_evaluate_compares_strategies_at_counts_a_user_can_draw(digits_run, capsys):
    code, out, _ = run_cli(
        ["evaluate", digits_run, "--labels", "10,1/class", "--strategy", "typiclust,random", "--seeds", "2"]
        + ["--protocol", "linear", "--quiet", "--no-report"],
        capsys,
    )
    assert code == 0
    header = out.splitlines()[0].split()
    assert header[:5] == ["protocol", "10", "typiclust", "10", "random"] and "1/class" in header
    evaluation = json.loads((digits_run / "eval.json").read_text())
    assert {(r["labels"], r["strategy"]) for r in evaluation["results"]} == {
        ("10", "typiclust"),
        ("10", "random"),
        ("1/class", "class-balanced"),
    }


def test_select_reuses_the_features_embed_wrote(digits_run, tmp_path):
    api.embed(digits_run, "digits", tmp_path / "e.npy")
    from_file = api.select(
        digits_run, budget=6, features=tmp_path / "e.npy", out=tmp_path / "a.csv", progress=False
    )
    embedded = api.select(digits_run, budget=6, out=tmp_path / "b.csv", progress=False)
    assert from_file["index"] == embedded["index"]


def test_select_on_an_image_folder_names_paths_and_on_a_corpus_texts(tmp_path):
    folder = make_image_folder(tmp_path / "pets", per_class=8)
    quick_run("simclr", folder, tmp_path / "img", TINY[:1] + ["train.batch_size=8"])
    api.select(tmp_path / "img", budget=3, strategy="kcenter", progress=False)
    rows = list(csv.DictReader(open(tmp_path / "img" / "picks.csv")))
    assert all(r["path"].startswith(("cat/", "dog/")) for r in rows)
    rows = label(tmp_path / "img" / "picks.csv", tmp_path / "by_path.csv", lambda r: r["path"].split("/")[0])
    by_path = read_labels(tmp_path / "by_path.csv", load_data(folder))
    assert by_path.names == [r["path"].split("/")[0] for r in rows]

    corpus = tmp_path / "news.csv"
    corpus.write_text(
        "text,label\n"
        + "".join(f"story number {i} about {'rain' if i % 2 else 'stocks'},{i % 2}\n" for i in range(60))
    )
    quick_run("mlm", corpus, tmp_path / "text", TINY_TEXT)
    picked = api.select(tmp_path / "text", budget=5, strategy="probcover", progress=False)
    rows = list(csv.DictReader(open(picked["csv"])))
    assert list(rows[0]) == ["rank", "index", "text", "cluster", "score", "label"] and rows[0][
        "text"
    ].startswith("story")
    assert '"text":' in open(picked["tasks"]).read()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--budget", "5000"], "--budget 5000 is more than the 1347 items not labelled yet"),
        (["--budget", "5", "--out", "picks.txt"], "--out must name a .csv file"),
        (["--budget", "5", "--features", "missing.npy"], "--features: missing.npy and missing.json"),
        (["--budget", "5", "--labelled", "missing.csv"], "labels file not found: missing.csv"),
    ],
)
def test_select_errors_are_one_line(digits_run, tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(["select", digits_run, *args, "--quiet"], capsys)
    assert_one_line_error(code, err, message)


def test_select_refuses_features_of_other_data(digits_run, tmp_path, capsys):
    np.save(tmp_path / "other.npy", np.zeros((10, 4), dtype=np.float32))
    (tmp_path / "other.json").write_text(json.dumps({"split": ["train"] * 10, "index": list(range(10))}))
    code, _, err = run_cli(
        ["select", digits_run, "--budget", "3", "--features", tmp_path / "other.npy", "--quiet"], capsys
    )
    assert_one_line_error(code, err, "lacks training item")


def test_kcenter_never_repeats_even_among_duplicates():
    x = l2_normalise(np.repeat(blobs(sizes=(6, 6)), 5, axis=0))  # every item five times over
    found = kcenter(x, 40, labelled=[0, 1], seed=0)
    assert len(set(found.rows.tolist())) == 40 and not {0, 1} & set(found.rows.tolist())


def test_select_never_overwrites_the_labels_it_reads(digits_run, tmp_path, capsys):
    api.select(digits_run, budget=5, out=tmp_path / "p.csv", progress=False)
    label(tmp_path / "p.csv", tmp_path / "p.csv", digit_label)
    before = (tmp_path / "p.csv").read_text()
    code, _, err = run_cli(
        [
            "select",
            digits_run,
            "--budget",
            "5",
            "--labelled",
            tmp_path / "p.csv",
            "--out",
            tmp_path / "p.csv",
        ],
        capsys,
    )
    assert_one_line_error(code, err, "is the labels file given with --labelled")
    assert (tmp_path / "p.csv").read_text() == before


def test_a_labels_file_not_filled_in_and_odd_indices_are_one_line_errors(digits_run, tmp_path):
    api.select(digits_run, budget=5, out=tmp_path / "p.csv", progress=False)
    with pytest.raises(DataError, match="no item of .*p.csv has a label yet"):
        read_labels(tmp_path / "p.csv", load_data("digits"))
    (tmp_path / "odd.csv").write_text("index,label\ninf,3\n3.5,4\n")
    with pytest.raises(DataError, match="2 item\\(s\\) not in digits: index 'inf', index '3.5'"):
        read_labels(tmp_path / "odd.csv", load_data("digits"))


def test_evaluate_labelled_scores_data_whose_training_items_are_unlabelled(tmp_path):
    folder = make_image_folder(tmp_path / "pets", classes=("cat", "dog"), per_class=6, splits=["test"])
    for i, image in enumerate(sorted((folder / "test").rglob("*.png"))):
        (folder / "train").mkdir(exist_ok=True)
        (folder / "train" / f"{i:03d}.png").write_bytes(image.read_bytes())  # train/: one flat folder
    quick_run("simclr", folder, tmp_path / "run", TINY[:1] + ["train.batch_size=6"])
    splits = load_data(folder)
    assert not splits.train.labelled and splits.test.labelled
    names = [f"train/{i:03d}.png" for i in range(4)]
    (tmp_path / "l.csv").write_text(
        "path,label\n" + "".join(f"{n},{('cat', 'dog')[i % 2]}\n" for i, n in enumerate(names))
    )
    evaluation = api.evaluate(
        tmp_path / "run",
        labelled=tmp_path / "l.csv",
        protocols=["knn", "linear"],
        progress=False,
        report=False,
    )
    assert {r["protocol"] for r in evaluation["results"]} == {"knn", "linear"}
