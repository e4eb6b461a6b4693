"""The code of the docs runs as it stands."""

import re
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_the_own_loop_example_trains(capsys):
    code = re.search(r"```python\n(.*?)```", (DOCS / "own_loop.md").read_text(), re.S).group(1)
    exec(compile(code, "own_loop.md", "exec"), {})
    losses = [float(line.split()[-1]) for line in capsys.readouterr().out.splitlines()]
    assert len(losses) == 4 and all(loss == loss for loss in losses) and losses[-1] < losses[0]
