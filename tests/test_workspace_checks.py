"""Checks before any work (issue 15, item 7): a --split that does not sum to 100 (or 1) is refused, never rescaled,
and the commands that read a workspace refuse one that does not exist instead of creating it."""

from __future__ import annotations

from pathlib import Path

import pytest

from fusekit.balance import parse_split
from fusekit.errors import ConfigError
from helpers import call_cli


@pytest.mark.parametrize("split, message", [
    ("80/30/10", "--split 80/30/10 sums to 120, not 100"),
    ("70/20", "--split 70/20 sums to 90, not 100"),
    ("0.8/0.3/0.1", "--split 0.8/0.3/0.1 sums to 1.2, not 1"),
])
def test_a_split_that_does_not_sum_to_100_is_refused(tmp_path: Path, capsys, split: str, message: str) -> None:
    ws = tmp_path / "ws"
    code, out, err = call_cli(capsys, "balance", "--split", split, workspace=ws)
    assert (code, out, err) == (2, "", f"Error: {message}\n")
    assert not ws.exists()


def test_splits_that_sum_to_100_or_1_are_taken_as_given() -> None:
    assert parse_split("80/10/10") == (0.8, 0.1, 0.1)
    assert parse_split("90/10") == (0.9, 0.1, 0.0)
    assert parse_split("0.7/0.2/0.1") == (0.7, 0.2, 0.1)
    assert parse_split("80:20:0") == (0.8, 0.2, 0.0)
    with pytest.raises(ConfigError, match=r"^--split 1/1/1 sums to 3, not 1$"):
        parse_split("1/1/1")


@pytest.mark.parametrize("split", ["80/30/10", "[80, 30, 10]"])
def test_a_recipe_split_names_its_key(tmp_path: Path, capsys, split: str) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"sources:\n  - {{name: fer2013, source: data}}\nbalance:\n  split: {split}\n",
                      encoding="utf-8")
    ws = tmp_path / "ws"
    code, _, err = call_cli(capsys, "build", str(recipe), workspace=ws)
    assert (code, err) == (2, f"Error: recipe {recipe}: balance.split 80/30/10 sums to 120, not 100\n")
    assert not ws.exists()


@pytest.mark.parametrize("argv", [
    ["dedupe"], ["dedupe", "--summary"], ["balance"], ["status"], ["remove", "fer2013", "--variant", "csv"],
])
def test_commands_that_read_a_workspace_refuse_a_missing_one(tmp_path: Path, capsys, argv: list[str]) -> None:
    ws = tmp_path / "nowhere"
    code, out, err = call_cli(capsys, *argv, workspace=ws)
    assert (code, out, err) == (2, "", f"Error: no workspace at {ws} (run fusekit ingest first)\n")
    assert not ws.exists()


def test_an_empty_folder_is_not_a_workspace(tmp_path: Path, capsys) -> None:
    code, _, err = call_cli(capsys, "dedupe", workspace=tmp_path)
    assert (code, err) == (2, f"Error: no workspace at {tmp_path} (run fusekit ingest first)\n")
    assert list(tmp_path.iterdir()) == []
