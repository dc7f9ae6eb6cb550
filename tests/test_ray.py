"""`--runner ray` on a real local Ray cluster (``ray start --head`` on 127.0.0.1 with 2 CPUs, started and stopped
here): the same pure workers as Ray tasks, one per part, give the local runner's tables byte for byte, and a worker
killed mid-part is retried without duplicate rows. Skipped, saying why, where Ray is not installed (the `test`
extra installs it)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_runner import parts, run, square_part, staged_rows

from fusekit.config import IngestConfig
from fusekit.workspace import Workspace

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install \"fusekit[ray]\" (the test extra has it)")

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A head node of 2 CPUs in its own process group (``--block``), so stopping it stops only what it started."""
    port = _free_port()
    temp = tmp_path_factory.mktemp("ray")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": os.pathsep.join(sys.path)}
    ray_cli = str(Path(sys.executable).with_name("ray"))
    head = subprocess.Popen([ray_cli, "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
                             "--port", str(port), "--num-cpus", "2", "--include-dashboard", "false",
                             "--disable-usage-stats", "--temp-dir", str(temp)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:  # up once a driver can connect
        probe = subprocess.run([sys.executable, "-c", f"import ray; ray.init(address={address!r}); ray.shutdown()"],
                               env=env, capture_output=True)
        if probe.returncode == 0:
            break
        if time.monotonic() > deadline or head.poll() is not None:
            os.killpg(head.pid, signal.SIGTERM)
            pytest.fail(f"the Ray head did not start: {probe.stderr.decode()[-500:]}")
        time.sleep(1)
    try:
        yield address
    finally:
        if ray.is_initialized():
            ray.shutdown()
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)


class KillsOnce:
    """Kills its own worker process (as the OOM killer or a lost node would) the first time it sees part ``at``."""

    def __init__(self, at: int, marker: Path) -> None:
        self.at, self.marker = at, marker

    def __call__(self, numbers: list[int]):
        if numbers[0] == self.at * 10 and not self.marker.exists():
            self.marker.write_text("killed once")
            os._exit(1)
        return square_part(numbers)


def test_ray_tasks_write_the_parts_of_the_local_runner_byte_for_byte(tmp_path, cluster):
    from fusekit.distribute_ray import ray_tasks

    _, here = run(Workspace(tmp_path / "here"), square_part)
    with ray_tasks(cluster) as distribute:
        calls, there = run(Workspace(tmp_path / "there"), square_part, distribute)
    assert calls == [(i, False) for i in range(len(parts()))]
    for i in range(len(parts())):
        name = f"part-{i:05d}.parquet"
        assert (here.path / "t" / name).read_bytes() == (there.path / "t" / name).read_bytes()


def test_a_worker_killed_mid_part_is_retried_without_duplicate_rows(tmp_path, cluster):
    from fusekit.distribute_ray import ray_tasks

    marker = tmp_path / "killed"  # on a filesystem every node sees, as the workspace must be
    with ray_tasks(cluster) as distribute:
        _, staging = run(Workspace(tmp_path / "ws"), KillsOnce(2, marker), distribute)
    assert marker.read_text() == "killed once"
    assert [r["n"] for r in staged_rows(staging)] == list(range(50))  # each row once, in order


def test_ingest_on_ray_gives_the_local_tables_byte_for_byte(tmp_path, cluster):
    from test_source_fer2013 import write_fer_csv

    from fusekit import api

    source = write_fer_csv(tmp_path / "fer2013.csv", n=40)
    tables = {}
    for runner in ("local", "ray"):
        ws = Workspace(tmp_path / runner)
        run_ = api.ingest(ws, IngestConfig(name="fer2013", source=source, chunk_size=8, workers=2, faces=False,
                                           runner=runner, address=cluster if runner == "ray" else None))
        assert run_.ingest.images == 40 and run_.ingest.parts == 5
        tables[runner] = {f"{table}/{p.name}": p.read_bytes() for table in ("images", "rejects")
                          for p in ws.parts(table, run_.unit)}
    assert tables["ray"] == tables["local"] and len(tables["local"]) == 10
