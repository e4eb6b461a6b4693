"""Which items to label: strategies for the cold start of active learning, as pure functions over
the L2-normalised features of a pool of items (float32 N×D).

Each takes the pool's features, a budget, the rows already labelled and a seed, and returns
:class:`Picks`: the rows to label, in order, each with its cluster and score. None returns a row
already labelled, or a row twice. ``seed`` seeds what is random in each (k-means' start, the first
centre, the draws).

* :func:`typiclust` (Hacohen, Dekel & Weinshall 2022, "Active Learning on a Budget"; official
  code ``avihu111/TypiClust``, ``deep-al/pycls/al/typiclust.py``): the most typical item of each
  of the largest clusters that hold the fewest labelled items.
* :func:`probcover` (Yehuda, Dekel, Hacohen & Weinshall 2022, "Active Learning Through a Covering
  Lens"; ``deep-al/pycls/al/prob_cover.py``): the items whose δ-balls cover the most items not
  yet covered.
* :func:`kcenter` (Sener & Savarese 2018, "Active Learning for Convolutional Neural Networks: A
  Core-Set Approach"): the greedy k-centre core set.
* :func:`random_picks`: uniform, seeded: what a user without selfsup does, the baseline.

None builds an N×N matrix: distances are computed a block of rows at a time, k-means turns to
mini-batches on large pools, and typicality and ProbCover's graph are computed on a seeded sample
where a cluster or the pool is larger than their documented limits (the note says so).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from selfsup.errors import ConfigError

BLOCK = 2048
"""Rows whose distances to a cluster are computed at a time (typicality)."""


@dataclass
class Picks:
    """What a strategy chose: ``rows`` of the pool in the order picked, each pick's ``cluster``
    (-1 where the strategy has none) and ``score`` (typicality, items newly covered, distance to
    the nearest centre; NaN for random picks), and a ``note`` of what was chosen on the way."""

    rows: np.ndarray
    cluster: np.ndarray
    score: np.ndarray
    note: str = ""


def l2_normalise(features: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (float32; a zero row stays zero)."""
    features = np.asarray(features, dtype=np.float32)
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return features / np.maximum(norms, 1e-12)


def check_budget(size: int, budget: int, labelled: np.ndarray) -> None:
    """Raise :class:`ConfigError` for a budget below 1 or above the unlabelled items of a pool of
    ``size`` items."""
    free = size - len(np.unique(labelled))
    if budget < 1:
        raise ConfigError(f"--budget must be at least 1, got {budget}")
    if budget > free:
        raise ConfigError(f"--budget {budget} is more than the {free} items not labelled yet")


def _labelled(labelled: Sequence[int] | np.ndarray) -> np.ndarray:
    return np.unique(np.asarray(labelled, dtype=np.int64))


# ---- random -----------------------------------------------------------------------------------------


def random_picks(
    features: np.ndarray, budget: int, labelled=(), seed: int = 0, progress: bool = False
) -> Picks:
    """``budget`` items drawn uniformly without replacement from those not labelled (seeded)."""
    labelled = _labelled(labelled)
    check_budget(len(features), budget, labelled)
    free = np.setdiff1d(np.arange(len(features)), labelled)
    rows = np.random.default_rng(seed).choice(free, size=budget, replace=False)
    return Picks(rows, np.full(budget, -1), np.full(budget, np.nan), "uniform random")


# ---- k-centre greedy ---------------------------------------------------------------------------------


def _squared_distances(features: torch.Tensor, squares: torch.Tensor, centre: int) -> torch.Tensor:
    """‖x − c‖² of every row x to the row ``centre`` (N), from the rows' squared norms: no N×D
    temporary."""
    return (squares - 2 * (features @ features[centre]) + squares[centre]).clamp_min(0)


def kcenter(features: np.ndarray, budget: int, labelled=(), seed: int = 0, progress: bool = False) -> Picks:
    """The greedy k-centre core set (Sener & Savarese 2018, Alg. 1): each pick is the item farthest
    (L2) from the labelled items and the picks so far. Without labelled items the first centre is
    an item drawn at random (seeded), as the core-set code starts from its random initial pool.
    Score: the pick's distance to its nearest centre when picked."""
    labelled = _labelled(labelled)
    check_budget(len(features), budget, labelled)
    x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
    squares = x.pow(2).sum(dim=1)
    nearest = torch.full((len(x),), float("inf"))
    step = max(1, BLOCK * BLOCK // max(1, len(x)))
    for start in range(0, len(labelled), step):  # the labelled centres a block at a time
        centres = torch.from_numpy(labelled[start : start + step])
        block = (squares[:, None] - 2 * (x @ x[centres].T) + squares[centres][None]).clamp_min(0)
        nearest = torch.minimum(nearest, block.min(dim=1).values)
    rows, scores = [], []
    if len(labelled) == 0:
        first = int(np.random.default_rng(seed).integers(len(x)))
        rows.append(first)
        scores.append(float("nan"))
        nearest = _squared_distances(x, squares, first)
    taken = torch.zeros(len(x), dtype=torch.bool)
    taken[torch.from_numpy(labelled)] = True
    taken[rows] = True
    for _ in tqdm(range(budget - len(rows)), desc="k-centre", disable=not progress, leave=False):
        nearest[taken] = -1.0  # never a centre again, whatever rounding leaves of its distance
        row = int(torch.argmax(nearest))
        rows.append(row)
        scores.append(float(nearest[row].sqrt()))
        taken[row] = True
        nearest = torch.minimum(nearest, _squared_distances(x, squares, row))
    return Picks(np.array(rows), np.full(budget, -1), np.array(scores), "greedy k-centre")


# ---- TypiClust ---------------------------------------------------------------------------------------

MAX_CLUSTERS = 500
"""TypiClust clusters the pool into labelled + budget clusters, at most this many (official code)."""
MIN_CLUSTER_SIZE = 5
"""Clusters of this many items or fewer are not picked from (official code)."""
TYPICALITY_NEIGHBOURS = 20
"""Typicality: the inverse mean squared distance to this many nearest neighbours in the cluster
(fewer in a small one: half its size, as the official code)."""
FULL_KMEANS = 50
"""k-means on the whole pool up to this many clusters, mini-batch k-means above (official code)..."""
FULL_KMEANS_ITEMS = 100_000
"""...and above this many items whatever the clusters (Lloyd's iterations over 1,000,000 items
take minutes on a CPU)."""
TYPICALITY_ITEMS = 10_000
"""In a larger cluster, typicality is computed among a seeded sample of this many of its items
(candidates and neighbours alike): an N×N distance computation in every cluster would not scale."""


def cluster(features: np.ndarray, clusters: int, seed: int, official_starts: bool = False) -> np.ndarray:
    """k-means cluster ids of the rows: scikit-learn's ``KMeans`` up to :data:`FULL_KMEANS`
    clusters and :data:`FULL_KMEANS_ITEMS` items, ``MiniBatchKMeans`` (batches of 5,000, as the
    official code) above; ``seed`` seeds k-means++. One start, or with ``official_starts`` (TypiClust)
    the best of 10 (3 for mini-batches): the official code relied on scikit-learn's defaults of its
    time, which 1.4 lowered to one start, and one start on 20 clusters of the digits moves
    TypiClust's accuracy by ±8 points between seeds."""
    from sklearn.cluster import KMeans, MiniBatchKMeans

    if clusters <= FULL_KMEANS and len(features) <= FULL_KMEANS_ITEMS:
        model = KMeans(n_clusters=clusters, random_state=seed, n_init=10 if official_starts else 1)
    else:
        starts = 3 if official_starts else 1
        model = MiniBatchKMeans(n_clusters=clusters, batch_size=5000, random_state=seed, n_init=starts)
    return model.fit_predict(features).astype(np.int64)


def typicality(features: np.ndarray, neighbours: int) -> np.ndarray:
    """1 / (mean squared L2 distance to the ``neighbours`` nearest other rows + 1e-5) of each row:
    the official code's, whose faiss ``IndexFlatL2`` returns squared distances (the paper writes
    the mean distance; the code is followed). ``neighbours`` is at least 1; one row alone: 1."""
    if len(features) < 2:
        return np.ones(len(features))
    x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
    neighbours = max(1, min(neighbours, len(x) - 1))
    squares = x.pow(2).sum(dim=1)
    means = []
    for start in range(0, len(x), BLOCK):
        block = x[start : start + BLOCK]
        distances = (squares[start : start + BLOCK, None] - 2 * block @ x.T + squares[None]).clamp_min(0)
        distances[torch.arange(len(block)), torch.arange(start, start + len(block))] = float("inf")  # itself
        means.append(distances.topk(neighbours, dim=1, largest=False).values.mean(dim=1))
    return (1.0 / (torch.cat(means).double() + 1e-5)).numpy()


def typiclust(features: np.ndarray, budget: int, labelled=(), seed: int = 0, progress: bool = False) -> Picks:
    """TypiClust (TPC_RP): k-means into ``min(labelled + budget, 500)`` clusters; the clusters of
    more than 5 items, those holding the fewest labelled items first and, among those, the
    largest first (ties by cluster id); then in turn (cycling when the budget is larger) the most
    typical unlabelled item of each (:func:`typicality` among its unlabelled items, with
    ``min(20, size // 2)`` neighbours). Score: the pick's typicality.

    Departures from the official code, for what it does not handle: a cluster with no unlabelled
    item left is passed over (the official code would fail), and where no cluster holds more than
    5 items every cluster is used. At scale: see :data:`FULL_KMEANS_ITEMS` and
    :data:`TYPICALITY_ITEMS`."""
    labelled = _labelled(labelled)
    check_budget(len(features), budget, labelled)
    count = min(len(labelled) + budget, MAX_CLUSTERS)
    ids = cluster(features, count, seed, official_starts=True)
    sizes = np.bincount(ids, minlength=count)
    existing = np.bincount(ids[labelled], minlength=count)
    order = [c for c in range(count) if sizes[c] > MIN_CLUSTER_SIZE] or [c for c in range(count) if sizes[c]]
    order.sort(key=lambda c: (existing[c], -sizes[c]))  # stable: ties keep the cluster ids' order
    taken = np.zeros(len(features), dtype=bool)
    taken[labelled] = True
    by_cluster = np.split(np.argsort(ids, kind="stable"), np.cumsum(sizes)[:-1])  # each cluster's rows
    note = f"{count} k-means clusters, {len(order)} of them picked from"
    rng = np.random.default_rng(seed)
    rows, clusters, scores, sampled = [], [], [], set()
    bar = tqdm(total=budget, desc="TypiClust", disable=not progress, leave=False)
    turn = 0
    while len(rows) < budget:
        chosen = order[turn % len(order)]
        turn += 1
        members = by_cluster[chosen][~taken[by_cluster[chosen]]]
        if len(members) == 0:
            if not any((~taken[by_cluster[c]]).any() for c in order):  # the clusters used are exhausted
                order = [c for c in range(count) if (~taken[by_cluster[c]]).any()]
            continue
        if len(members) > TYPICALITY_ITEMS:
            members = np.sort(rng.choice(members, TYPICALITY_ITEMS, replace=False))
            sampled.add(chosen)
        scores_here = typicality(features[members], min(TYPICALITY_NEIGHBOURS, len(members) // 2))
        best = int(np.argmax(scores_here))
        rows.append(int(members[best]))
        clusters.append(chosen)
        scores.append(float(scores_here[best]))
        taken[members[best]] = True
        bar.update(1)
    bar.close()
    if sampled:
        note += f"; typicality on samples of {TYPICALITY_ITEMS} items in {len(sampled)} large clusters"
    return Picks(np.array(rows), np.array(clusters), np.array(scores), note)


# ---- ProbCover ---------------------------------------------------------------------------------------

PURITY = 0.95
"""ProbCover's δ: the largest radius whose balls are pure (hold one pseudo-class) for this share
of the items (the paper's α)."""
PURITY_SAMPLE = 10_000
"""Items whose nearest item of another pseudo-class is found to estimate δ (seeded sample)."""
PROBCOVER_ITEMS = 50_000
"""ProbCover's graph holds every pair of items closer than δ: above this many items it runs on a
seeded sample of them (every labelled item kept; δ is chosen on it too), and says so."""
MAX_EDGES = 50_000_000
"""...and on fewer where the graph would hold more edges than this (its memory: about 20 bytes an
edge, for the graph and its reverse)."""
SIMILARITIES = 2**25
"""Distances computed at a time (128 MB of float32)."""


def _distance_blocks(x: torch.Tensor, rows: torch.Tensor):
    """(first position in ``rows``, distances of a block of ``rows`` to every row of ``x``): blocks
    of at most :data:`SIMILARITIES` distances."""
    step = max(1, SIMILARITIES // max(1, len(x)))
    for start in range(0, len(rows), step):
        yield start, torch.cdist(x[rows[start : start + step]], x)


def purity_radius(features: np.ndarray, pseudo_labels: np.ndarray, purity: float, seed: int) -> float:
    """The largest δ such that a share ``purity`` of the items have a pure δ-ball (no item of
    another pseudo-label at distance < δ). An item's ball is pure exactly while δ is at most its
    distance to the nearest item of another pseudo-label, so δ is the (1 − purity) quantile of
    that distance (computed for a seeded sample of :data:`PURITY_SAMPLE` items against all): the
    paper's search over a grid of δ, in closed form."""
    rng = np.random.default_rng(seed)
    sample = torch.from_numpy(
        np.sort(rng.choice(len(features), min(PURITY_SAMPLE, len(features)), replace=False))
    )
    x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
    labels = torch.from_numpy(pseudo_labels)
    other = []
    for start, distances in _distance_blocks(x, sample):
        rows = sample[start : start + len(distances)]
        distances[labels[rows][:, None] == labels[None]] = float("inf")
        other.append(distances.min(dim=1).values)
    return float(torch.quantile(torch.cat(other).double(), 1 - purity, interpolation="lower"))


def ball_graph(features: np.ndarray, delta: float, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The directed graph x -> y for every pair at L2 distance < ``delta`` (an item's own edge
    included), as CSR arrays (``starts`` N+1, ``targets``), computed a block of rows at a time."""
    x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
    counts, targets = [], []
    blocks = _distance_blocks(x, torch.arange(len(x)))
    for _, distances in tqdm(blocks, desc="δ-ball graph", disable=not progress, leave=False):
        near = distances < delta
        counts.append(near.sum(dim=1))
        targets.append(near.nonzero()[:, 1].to(torch.int32))
    starts = np.concatenate([[0], torch.cat(counts).cumsum(0).numpy()])
    return starts.astype(np.int64), torch.cat(targets).numpy()


def probcover(
    features: np.ndarray,
    budget: int,
    labelled=(),
    seed: int = 0,
    progress: bool = False,
    delta: float | None = None,
) -> Picks:
    """ProbCover: the greedy max coverage of δ-balls. δ (unless given): :func:`purity_radius` at
    :data:`PURITY` against k-means pseudo-labels whose number is :func:`estimate_classes` (the
    paper's is the number of classes, which needs labels). The
    labelled items' balls count as covered; each pick is the item whose ball covers the most
    items not yet covered (ties: the lowest row), as the official code. Score: the items it newly
    covers. Once everything is covered, the remaining picks are the items farthest from every
    labelled item and pick so far (k-centre steps), so no pick repeats. At scale: see
    :data:`PROBCOVER_ITEMS` and :data:`MAX_EDGES`."""
    labelled = _labelled(labelled)
    check_budget(len(features), budget, labelled)
    pool = _pool(len(features), labelled, budget, PROBCOVER_ITEMS, seed)
    if delta is None:
        clusters = estimate_classes(features[pool], seed)
        delta = purity_radius(features[pool], cluster(features[pool], clusters, seed), PURITY, seed)
        note = f"δ = {delta:.3f} (purity {PURITY} against {clusters} k-means pseudo-classes, by silhouette)"
    else:
        note = f"δ = {delta:.3f} (given)"
    edges = _estimated_edges(features[pool], delta, seed)
    if edges > MAX_EDGES:  # edges grow with the square of the items
        pool = _pool(len(features), labelled, budget, int(len(pool) * np.sqrt(MAX_EDGES / edges)), seed)
    if len(pool) < len(features):
        note += f"; graph on a sample of {len(pool)} of the {len(features)} items"
    local = np.searchsorted(pool, labelled)
    starts, targets = ball_graph(features[pool], delta, progress)
    rows, scores, covered_share = _greedy_cover(starts, targets, local, budget)
    picked = [int(pool[r]) for r in rows]
    if len(picked) < budget:
        rest = kcenter(
            features, budget - len(picked), np.concatenate([labelled, picked]).astype(np.int64), seed
        )
        note += (
            f"; everything covered after {len(picked)} picks: the other {len(rest.rows)} by k-centre steps"
        )
        picked += rest.rows.tolist()
        scores += rest.score.tolist()
    note += f"; coverage {covered_share:.0%}"
    return Picks(np.array(picked), np.full(budget, -1), np.array(scores, dtype=float), note)


CLASS_GRID = (2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50)
"""The numbers of classes :func:`estimate_classes` tries."""
SILHOUETTE_FIT, SILHOUETTE_SCORE = 10_000, 3_000
"""Items (seeded samples) each k-means of the search is fitted on, and scored on."""


def estimate_classes(features: np.ndarray, seed: int) -> int:
    """The number of classes, estimated without labels: the k of :data:`CLASS_GRID` whose k-means
    clustering of a sample of :data:`SILHOUETTE_FIT` items has the highest mean silhouette
    (Rousseeuw 1987) on :data:`SILHOUETTE_SCORE` of them. On the demo's digits features it is
    12 (10 classes); ProbCover's paper sets it to the true number of classes."""
    from sklearn.metrics import silhouette_score

    rng = np.random.default_rng(seed)
    fit = features[np.sort(rng.choice(len(features), min(SILHOUETTE_FIT, len(features)), replace=False))]
    scored = rng.choice(len(fit), min(SILHOUETTE_SCORE, len(fit)), replace=False)
    best, chosen = -np.inf, 2
    for k in (k for k in CLASS_GRID if k < len(fit)):
        labels = cluster(fit, k, seed)
        if len(np.unique(labels[scored])) < 2:
            continue
        score = silhouette_score(fit[scored], labels[scored])
        if score > best:
            best, chosen = score, k
    return chosen


def _pool(size: int, labelled: np.ndarray, budget: int, limit: int, seed: int) -> np.ndarray:
    """Every row, or where there are more than ``limit``, the labelled rows and a seeded sample of
    the others (at least ``budget``), sorted."""
    if size <= limit:
        return np.arange(size)
    free = np.setdiff1d(np.arange(size), labelled)
    kept = np.random.default_rng(seed).choice(free, max(limit - len(labelled), budget), replace=False)
    return np.sort(np.concatenate([labelled, kept]))


def _estimated_edges(features: np.ndarray, delta: float, seed: int, sample: int = 1000) -> float:
    """The graph's edges, estimated from the neighbours of a seeded sample of items."""
    rng = np.random.default_rng(seed)
    rows = torch.from_numpy(rng.choice(len(features), min(sample, len(features)), replace=False))
    x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
    near = sum(int((distances < delta).sum()) for _, distances in _distance_blocks(x, rows))
    return near / len(rows) * len(features)


def _greedy_cover(
    starts: np.ndarray, targets: np.ndarray, labelled: np.ndarray, budget: int
) -> tuple[list[int], list[float], float]:
    """Greedy max coverage on the CSR graph: up to ``budget`` rows, each covering the most rows
    not yet covered (first the ``labelled`` rows' balls are covered); stops early once nothing is
    left to cover. Returns the rows, the rows each newly covered, and the share covered."""
    size = len(starts) - 1
    sources = np.repeat(np.arange(size), np.diff(starts))
    into = np.argsort(targets, kind="stable")  # the edges by target: who covers each row
    into_starts = np.concatenate([[0], np.cumsum(np.bincount(targets, minlength=size))])
    covered = np.zeros(size, dtype=bool)
    degrees = np.diff(starts).astype(np.int64)

    def cover(rows: np.ndarray) -> int:
        new = np.unique(np.concatenate([targets[starts[r] : starts[r + 1]] for r in rows]))
        new = new[~covered[new]]
        covered[new] = True
        edges = into[_ranges(into_starts[new], into_starts[new + 1])]
        degrees[:] -= np.bincount(sources[edges], minlength=size)  # newly covered rows count no more
        return len(new)

    if len(labelled):
        cover(labelled)
    rows, scores = [], []
    for _ in range(budget):
        row = int(np.argmax(degrees))
        if degrees[row] <= 0:
            break
        rows.append(row)
        scores.append(float(cover(np.array([row]))))
    return rows, scores, float(covered.mean())


def _ranges(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """The concatenation of ``range(start, end)`` for each pair, without a Python loop."""
    lengths = ends - starts
    if lengths.sum() == 0:
        return np.zeros(0, dtype=np.int64)
    offsets = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
    return np.arange(lengths.sum()) + offsets


STRATEGIES: dict[str, Callable[..., Picks]] = {
    "typiclust": typiclust,
    "probcover": probcover,
    "kcenter": kcenter,
    "random": random_picks,
}
"""Every strategy by its ``--strategy`` name."""


def pick(
    strategy: str, features: np.ndarray, budget: int, labelled=(), seed: int = 0, progress: bool = False
) -> Picks:
    """``STRATEGIES[strategy]`` on the L2-normalised ``features``; raises :class:`ConfigError` for
    an unknown strategy or a budget the pool cannot give."""
    if strategy not in STRATEGIES:
        raise ConfigError(f"unknown strategy '{strategy}' (choose from {', '.join(STRATEGIES)})")
    return STRATEGIES[strategy](l2_normalise(features), budget, labelled, seed=seed, progress=progress)
