"""The training loop writes the numbers it wrote before its redesign (issue 17), to 1e-6."""

import json

import pytest

from reference.runs import REFERENCE, RUNS, differences, run


@pytest.mark.parametrize("method", list(RUNS))
def test_loop_reproduces_the_reference_losses(method, tmp_path):
    expected = json.loads(REFERENCE.read_text())[method]
    assert differences(expected, run(method, tmp_path), method) == []
