"""`fusekit.runner`: the one runner of part-wise work (skip finished parts, bounded in flight, write through the
staging, account, resume after a failure) and its distributors (in-process, local processes)."""

from __future__ import annotations

import ast
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fusekit.runner import Part, in_process, local_processes, run_parts
from fusekit.workspace import Workspace

SCHEMA = pa.schema([("n", pa.int64()), ("square", pa.int64())])


def square_part(numbers: list[int]) -> dict[str, pa.Table]:  # module level: picklable for worker processes
    return {"t": pa.Table.from_pylist([{"n": n, "square": n * n} for n in numbers], schema=SCHEMA)}


class FailsAt:
    def __init__(self, index: int) -> None:
        self.index = index

    def __call__(self, numbers: list[int]) -> dict[str, pa.Table]:
        if numbers[0] == self.index * 10:
            raise RuntimeError("killed mid-part")
        return square_part(numbers)


def parts(n: int = 5) -> list[Part]:
    return [Part(i, list(range(i * 10, i * 10 + 10)), 10) for i in range(n)]


def run(ws: Workspace, worker, distribute=in_process, unit: str = "u--v") -> tuple[list[tuple[int, bool]], object]:
    staging = ws.stage(unit, {"test": 1})
    calls: list[tuple[int, bool]] = []
    run_parts(parts(), worker, staging, stats=lambda part, tables: {"rows": tables["t"].num_rows},
              account=lambda part, stats, resumed: calls.append((part.index, resumed)), distribute=distribute)
    return calls, staging


def staged_rows(staging) -> list[dict]:
    files = sorted((staging.path / "t").glob("*.parquet"))
    return pa.concat_tables([pq.read_table(f) for f in files]).to_pylist()


def test_every_part_is_written_in_order_and_accounted_once(tmp_path):
    calls, staging = run(Workspace(tmp_path / "ws"), square_part)
    assert calls == [(i, False) for i in range(5)]
    assert [r["square"] for r in staged_rows(staging)] == [n * n for n in range(50)]
    assert all(staging.is_done(i) and staging.done_stats(i) == {"rows": 10} for i in range(5))


def test_a_run_killed_mid_part_resumes_where_it_stopped_without_duplicate_rows(tmp_path):
    ws = Workspace(tmp_path / "ws")
    with pytest.raises(RuntimeError, match="killed mid-part"):
        run(ws, FailsAt(3))
    calls, staging = run(ws, square_part)  # same fingerprint: the staging is resumed
    assert calls == [(0, True), (1, True), (2, True), (3, False), (4, False)]
    _, whole = run(Workspace(tmp_path / "whole"), square_part)
    assert staged_rows(staging) == staged_rows(whole)  # as an uninterrupted run: each row once
    assert [r["n"] for r in staged_rows(staging)] == list(range(50))


def test_local_processes_give_the_same_parts_as_in_process(tmp_path):
    _, here = run(Workspace(tmp_path / "here"), square_part)
    with local_processes(2) as distribute:
        calls, there = run(Workspace(tmp_path / "there"), square_part, distribute)
    assert calls == [(i, False) for i in range(5)]
    for i in range(5):
        assert (here.path / "t" / f"part-{i:05d}.parquet").read_bytes() == \
            (there.path / "t" / f"part-{i:05d}.parquet").read_bytes()


def test_local_processes_start_no_pool_for_nothing_and_keep_a_bounded_number_in_flight(monkeypatch):
    import concurrent.futures

    import fusekit.runner

    started = []
    submitted, finished = [], []

    class Counting(concurrent.futures.ThreadPoolExecutor):
        def submit(self, fn, *args):
            submitted.append(args[0])
            return super().submit(fn, *args)

    monkeypatch.setattr(fusekit.runner, "process_pool", lambda *a, **k: started.append(a) or Counting(2))
    with local_processes(2, in_flight=2) as distribute:
        assert list(distribute(square_part, iter([]))) == []
        assert started == []
        for index, _ in distribute(square_part, ((i, [i]) for i in range(8))):
            finished.append(index)
            assert len(submitted) - len(finished) <= 2  # never more than in_flight ahead of what came back
    assert finished == list(range(8)) and len(started) == 1


def test_no_process_pool_is_built_outside_the_runner():
    package = Path(__file__).resolve().parents[1] / "fusekit"
    wrong = []
    for path in sorted(package.rglob("*.py")):
        if path.name == "runner.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Name) and node.id == "ProcessPoolExecutor" or \
                    isinstance(node, ast.alias) and node.name == "ProcessPoolExecutor":
                wrong.append(str(path.relative_to(package)))
    assert wrong == []


def test_without_ray_the_runner_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    import sys

    from helpers import call_cli
    from test_source_fer2013 import write_fer_csv

    from fusekit.config import IngestConfig
    from fusekit.errors import UserError

    monkeypatch.setitem(sys.modules, "ray", None)  # as on an install without the extra
    source = write_fer_csv(tmp_path / "fer2013.csv", n=4)
    with pytest.raises(UserError, match=r'pip install "fusekit\[ray\]"'):
        IngestConfig(name="fer2013", source=source, runner="ray")
    code, _, err = call_cli(capsys, "ingest", "fer2013", "--source", str(source), "--runner", "ray",
                            workspace=tmp_path / "ws")
    assert code == 2 and err.strip() == 'Error: --runner ray needs Ray, which is not installed: pip install ' \
                                        '"fusekit[ray]"'
