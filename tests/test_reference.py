"""The training loop writes the numbers it wrote before its redesign (issue 17), within a
tolerance that holds on any CPU's kernels yet catches a real change (tests/reference/runs.py says
why). ``make test`` runs the ``pinned`` tests again under other kernel paths."""

import json

import pytest

from reference.runs import REFERENCE, RUNS, differences, run


@pytest.mark.pinned
@pytest.mark.parametrize("method", list(RUNS))
def test_loop_reproduces_the_reference_losses(method, tmp_path):
    expected = json.loads(REFERENCE.read_text())[method]
    assert differences(expected, run(method, tmp_path), method) == []


def test_the_tolerance_still_catches_a_change_in_a_loss_or_a_schedule(tmp_path, monkeypatch):
    import selfsup.methods.simclr as simclr
    import selfsup.train.run as setup

    expected = json.loads(REFERENCE.read_text())["simclr"]
    loss, lr_at = simclr.nt_xent_loss, setup.lr_at
    monkeypatch.setattr(simclr, "nt_xent_loss", lambda z1, z2, t: loss(z1, z2, t * 1.1))  # 0.5 typed 0.55
    found = differences(expected, run("simclr", tmp_path / "loss"), "simclr")
    assert found and not any(".lr:" in d for d in found)
    monkeypatch.setattr(simclr, "nt_xent_loss", loss)
    monkeypatch.setattr(setup, "lr_at", lambda step, *rest: lr_at(step + 1, *rest))  # off by one step
    assert any(".lr:" in d for d in differences(expected, run("simclr", tmp_path / "lr"), "simclr"))
