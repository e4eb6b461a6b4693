"""The README and the documentation site name only verbs, options and settings that exist: every
``selfsup …`` command in a code block or an inline code span is checked against the parser's
verbs (selfsup.verbs) and the configuration's sections (selfsup.config)."""

import dataclasses
import re
import shlex
from pathlib import Path

import pytest

from selfsup.config import Config
from selfsup.verbs import VERBS

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUNS = re.compile(r"^(selfsup|torchrun .*-m selfsup|python -m selfsup) ")
SETTING = re.compile(r"^([a-z_]+)\.([a-z_]+)=")


def commands(text: str) -> list[str]:
    """Each ``selfsup`` command of a Markdown page: the lines of its code blocks (continuations
    joined) and its inline code spans that run selfsup."""
    found, block = [], None
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            block = [] if block is None else None
            continue
        if block is not None:
            if block and block[-1].endswith("\\"):
                block[-1] = block[-1][:-1].rstrip() + " " + line.strip()
            else:
                block.append(line.strip())
            if RUNS.search(block[-1]) and not block[-1].endswith("\\"):
                found.append(block[-1])
        else:
            found += [span for span in re.findall(r"`([^`]+)`", line) if span.startswith("selfsup ")]
    return found


def words_after_selfsup(command: str) -> list[str]:
    words = shlex.split(command.replace("…", ""), comments=True)
    return words[words.index("selfsup") + 1 :] if "selfsup" in words else []


def problems(command: str) -> list[str]:
    words = words_after_selfsup(command)
    if not words or words[0] in ("--help", "--version", "-h"):
        return []
    verb = VERBS.get(words[0])
    if verb is None:
        return [f"no verb {words[0]!r}"]
    options = {option.name for option in verb.options} | {"--help", "-h"}
    out = []
    for word in words[1:]:
        if word.startswith("--") and word.split("=")[0] not in options:
            out.append(f"{verb.name} has no option {word.split('=')[0]}")
        setting = SETTING.match(word)
        if setting and setting.group(1) != "method":
            section, key = setting.groups()
            fields = getattr(Config(), section, None)
            if not dataclasses.is_dataclass(fields) or key not in {
                f.name for f in dataclasses.fields(fields)
            }:
                out.append(f"no setting {section}.{key}")
    return out


@pytest.mark.parametrize("page", PAGES, ids=lambda path: path.name)
def test_every_command_in_the_pages_names_a_verb_option_and_setting_that_exist(page):
    found = commands(page.read_text())
    wrong = {command: problems(command) for command in found}
    assert not {command: issue for command, issue in wrong.items() if issue}


def test_the_command_check_catches_what_does_not_exist():
    assert commands("```bash\nselfsup pretrain --method simclr \\\n  --epochs 3\n```\nand `selfsup fly`") == [
        "selfsup pretrain --method simclr --epochs 3",
        "selfsup fly",
    ]
    assert problems("selfsup fly") == ["no verb 'fly'"]
    assert problems("selfsup pretrain --epoch 3") == ["pretrain has no option --epoch"]
    assert problems("selfsup pretrain optim.learning_rate=0.1") == ["no setting optim.learning_rate"]
    assert problems("selfsup pretrain --epochs 3 optim.lr=0.1 method.temperature=0.2  # a comment") == []


def test_the_pages_hold_the_commands_the_check_reads():
    counted = {page.name: len(commands(page.read_text())) for page in PAGES}
    assert counted["README.md"] >= 5 and sum(counted.values()) >= 80, counted
