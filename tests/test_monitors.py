import math
import warnings

import pytest
import torch

from conftest import TINY
from selfsup import api
from selfsup.errors import TrainingError
from selfsup.train.monitors import collapse_message, effective_rank, normalized_embedding_std

INVARIANCE_ONLY = ["method.var_weight=0", "method.cov_weight=0"]  # VICReg without its anti-collapse terms


def test_std_of_normalised_embeddings():
    torch.manual_seed(0)
    assert normalized_embedding_std(torch.ones(64, 8)) == pytest.approx(0.0, abs=1e-6)
    assert normalized_embedding_std(torch.randn(4096, 64)) == pytest.approx(1 / math.sqrt(64), rel=0.05)


def test_effective_rank():
    torch.manual_seed(0)
    assert effective_rank(torch.randn(2000, 16)) == pytest.approx(16, rel=0.05)
    rank_one = torch.randn(100, 1) @ torch.randn(1, 16)
    assert effective_rank(rank_one) == pytest.approx(1.0, abs=0.01)


def test_collapse_message_names_the_collapsed_output():
    out = {"embedding": torch.zeros(8, 64), "projection": torch.zeros(8, 16)}
    healthy = {"embedding_std": 0.12, "projection_std": 0.24, "embedding_rank": 30.0}
    assert collapse_message(out, healthy, 0.05) is None
    message = collapse_message(out, {**healthy, "projection_std": 0.001}, 0.05)
    assert message.startswith("projection collapse") and "1/√16" in message


def run_vicreg(tmp_path, overrides):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = api.pretrain(
            "vicreg", "digits", out=tmp_path, epochs=6, overrides=TINY + overrides, progress=False
        )
    return result, [str(w.message) for w in caught if "collapse" in str(w.message)]


def test_monitor_fires_on_a_collapsing_run_and_stays_quiet_on_a_healthy_one(tmp_path):
    healthy, healthy_warnings = run_vicreg(tmp_path / "healthy", [])
    collapsed, collapse_warnings = run_vicreg(tmp_path / "collapsed", INVARIANCE_ONLY)
    assert healthy_warnings == []
    assert collapse_warnings and "projection collapse" in collapse_warnings[-1]
    assert collapsed.history[-1]["projection_std"] < 0.1 * healthy.history[-1]["projection_std"]
    assert {"embedding_std", "embedding_rank", "projection_std"} <= set(healthy.history[-1])


def test_stop_on_collapse_ends_the_run_with_a_clear_error(tmp_path):
    with pytest.raises(TrainingError, match="projection collapse.*stop_on_collapse"):
        api.pretrain(
            "vicreg",
            "digits",
            out=tmp_path,
            epochs=6,
            progress=False,
            overrides=TINY + INVARIANCE_ONLY + ["train.stop_on_collapse=true"],
        )


def test_assignment_information_is_zero_in_both_collapse_modes():
    from selfsup.train.monitors import assignment_information

    k = 16
    uniform = assignment_information(torch.full((32, k), 1 / k))
    one_prototype = assignment_information(
        torch.nn.functional.one_hot(torch.zeros(32, dtype=torch.long), k).float()
    )
    spread = assignment_information(torch.nn.functional.one_hot(torch.arange(32) % k, k).float())
    assert uniform["assignment_information"] == pytest.approx(0, abs=1e-6) and uniform[
        "assignment_entropy"
    ] == pytest.approx(1)
    assert one_prototype["assignment_information"] == pytest.approx(0, abs=1e-6)
    assert spread["assignment_information"] == pytest.approx(1, abs=1e-6)


def test_monitor_fires_on_dino_collapsing_to_the_uniform_distribution(tmp_path):
    """Without BatchNorm in the head and with a warm teacher, DINO on the digits falls to the uniform
    distribution: the assignment monitor says so."""
    overrides = [o for o in TINY if not o.startswith("method.")] + [
        "method.out_dim=64",
        "method.hidden_dim=32",
        "method.bottleneck_dim=16",
        "method.head_batch_norm=false",
        "method.teacher_temp=0.07",
        "method.warmup_teacher_temp=0.07",
        "augment.local_views=0",
    ]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = api.pretrain("dino", "digits", out=tmp_path, epochs=6, overrides=overrides, progress=False)
    messages = [str(w.message) for w in caught if "collapse" in str(w.message)]
    assert messages and "assignment collapse" in messages[-1] and "near uniform" in messages[-1]
    assert result.history[-1]["assignment_information"] < 0.05
    assert (
        result.history[-1]["loss"] > math.log(64) - 0.01
    )  # cross-entropy to a uniform teacher is at least ln K
