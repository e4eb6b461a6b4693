"""The digits as a user's image folder, for the README's path from an unlabelled folder to
predictions, and the labeller of its picks.

    python benchmarks/digits_folder.py write digits-folder     # train/ unlabelled, test/ by class
    python benchmarks/digits_folder.py label digits-folder runs/digits/picks.csv
    python benchmarks/digits_folder.py score digits-folder predictions.csv

``write`` saves scikit-learn's digits as PNG files: the 1,347 training digits of selfsup's split
in ``train/`` (one flat folder: unlabelled), the 450 test digits in ``test/<class>/`` (to score
the predictions), and beside the folder an answer key of the training digits
(``FOLDER.answers.csv``, never read by selfsup). ``label`` plays the user: it fills in the
``label`` column of ``select``'s CSV from the answer key. ``score`` compares ``predict``'s rows of
``test/`` with the class folders they sit in.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
from PIL import Image


def write(folder: Path) -> None:
    from selfsup.data import load_data

    splits = load_data("digits")
    answers = []
    for split, data in (("train", splits.train), ("test", splits.test)):
        for row, index in enumerate(data.indices().tolist()):
            label = data.classes[int(data.labels[row])]
            name = f"train/{index:04d}.png" if split == "train" else f"test/{label}/{index:04d}.png"
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(data.images[row, 0].numpy().astype(np.uint8)).save(folder / name)
            if split == "train":
                answers.append((name.removeprefix("train/"), label))
    with open(folder.with_name(folder.name + ".answers.csv"), "w", newline="") as handle:
        csv.writer(handle).writerows([("file", "label"), *answers])
    print(f"wrote {folder}/train (1,347 unlabelled), {folder}/test (450 by class) and the answer key")


def label(folder: Path, picks: Path) -> None:
    with open(folder.with_name(folder.name + ".answers.csv")) as handle:
        answers = {row["file"]: row["label"] for row in csv.DictReader(handle)}
    with open(picks) as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        row["label"] = answers[Path(row["path"]).name]
    with open(picks, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"labelled the {len(rows)} picks of {picks}")


def score(predictions: Path) -> None:
    with open(predictions) as handle:
        rows = list(csv.DictReader(handle))
    right = sum(row["label"] == Path(row["path"]).parent.name for row in rows)
    print(f"{right} of {len(rows)} test digits right: accuracy {right / len(rows):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["write", "label", "score"])
    parser.add_argument("folder", type=Path)
    parser.add_argument("csv", type=Path, nargs="?", help="select's picks (label) or predict's rows (score)")
    args = parser.parse_args()
    if args.action == "write":
        write(args.folder)
    elif args.action == "label":
        label(args.folder, args.csv)
    else:
        score(args.csv)


if __name__ == "__main__":
    main()
