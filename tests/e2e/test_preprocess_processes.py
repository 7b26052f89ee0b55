"""``preprocess h36m --workers 2`` as processes: signals, dying and failing workers, scripts calling the API.

The signal tests run the real command in its own session (so a group signal reaches it and its workers, not
pytest) and inspect the processes through /proc and the output folder through the file system.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from ctxpose.data.h36m import metadata
from ctxpose.data.h36m.preprocess import PreprocessOptions, preprocess_h36m
from ctxpose.data.h36m.process_sequence import SequenceJob
from ctxpose.data.h36m.synthesize import synthesize_h36m
from ctxpose.data.h36m.workers import WorkerCrash, run_in_workers
from ctxpose.data.labels import load_labels
from ctxpose.errors import OutputError
from ctxpose.skeleton import get_skeleton

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")]

SEQUENCES = 6
ARGS = ("--workers", "2", "--train-every", "1", "--image-size", "48")


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    root = tmp_path_factory.mktemp("raw")
    synthesize_h36m(root, subjects=["S1"], actions=["Walking", "TakingPhoto", "Directions"], n_frames=40, size=128)
    return root


def _start(raw: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    return subprocess.Popen([sys.executable, "-m", "ctxpose", "preprocess", "h36m", str(raw), str(out), *ARGS],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)


def _recorded(out: Path) -> dict:
    try:
        return json.loads((out / "manifest.json").read_text())["sequences"]
    except (OSError, ValueError, KeyError):
        return {}


def _wait_for(condition, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "timed out waiting for the run to make progress"
        time.sleep(0.02)


def _parents() -> dict[int, int]:
    """pid -> parent pid of every process (from /proc/<pid>/stat)."""
    out = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            out[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return out


def _descendants(pid: int) -> set[int]:
    parents, found, frontier = _parents(), set(), {pid}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")  # a zombie has exited and only waits to be reaped


def _files(out: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(out)): (p.stat().st_size, p.stat().st_mtime_ns) for p in out.rglob("*") if p.is_file()}


def _temporaries(out: Path) -> list[Path]:
    return [p for p in out.rglob(".*") if p.is_file()]


@pytest.mark.parametrize("target", ["group", "parent"])
def test_ctrl_c_stops_promptly_and_records_every_finished_sequence(raw, tmp_path, target):
    """Ctrl-C in a terminal signals the whole group ("group"); ``kill -INT`` only the command ("parent")."""
    out = tmp_path / "out"
    proc = _start(raw, out)
    _wait_for(lambda: len(_recorded(out)) >= 1, proc)
    workers = _descendants(proc.pid)
    assert len(workers) >= 2  # the run is parallel
    if target == "group":
        os.killpg(proc.pid, signal.SIGINT)
    else:
        os.kill(proc.pid, signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "stopped:" in stdout and "run the same command again" in stdout and "Traceback" not in stderr
    assert not [p for p in workers if _alive(p)]

    recorded = _recorded(out)
    shards = sorted(str(p.relative_to(out / "parts").with_suffix("")) for p in (out / "parts").rglob("*.npz"))
    assert sorted(recorded) == shards  # every sequence that finished is in the manifest
    assert 1 <= len(recorded) < SEQUENCES  # stopped: the queued sequences were not worked through
    labels = load_labels(out / "labels.npz")  # and in the labels
    assert labels.meta["sequences"] == sorted(recorded) and len(labels) == sum(v["rows"] for v in recorded.values())
    assert all(cv2.imread(str(out / rel)) is not None for rel in labels.image)
    assert not _temporaries(out)  # no partial file
    report = json.loads((out / "preprocess_report.json").read_text())
    assert report["interrupted"] and sorted(r["key"] for r in report["done"]) == sorted(recorded)

    if target == "parent":
        return  # the re-run below is the same for both
    again = preprocess_h36m(raw, out, PreprocessOptions(train_every=1, image_size=48))
    assert sorted(again.skipped) == sorted(recorded) and len(again.done) == SEQUENCES - len(recorded)
    final = load_labels(out / "labels.npz")
    assert len(final) == SEQUENCES * 4 * 40 and len(np.unique(final.image)) == len(final)


def test_sigkill_of_the_command_takes_its_workers_with_it(raw, tmp_path):
    out = tmp_path / "out"
    proc = _start(raw, out)
    _wait_for(lambda: any((out / "images").rglob("*.jpg")) if (out / "images").is_dir() else False, proc)
    children = _descendants(proc.pid)
    assert len(children) >= 2
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    deadline = time.monotonic() + 15.0
    while [p for p in children if _alive(p)] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [p for p in children if _alive(p)], "workers outlived their parent"
    before = _files(out)
    time.sleep(1.5)
    assert _files(out) == before  # nothing is written any more
    assert not _temporaries(out)  # the workers removed the crop they were writing
    assert len(_recorded(out)) < SEQUENCES


SCRIPT = """
import json, sys
from ctxpose.data.h36m.preprocess import PreprocessOptions, preprocess_h36m

with open(sys.argv[3], "a") as f:  # module level, no __main__ guard: counts how often this script runs
    f.write("ran\\n")
report = preprocess_h36m(sys.argv[1], sys.argv[2], PreprocessOptions(image_size=32, workers=2, train_every=8,
                                                                     cameras=("54138969",)))
print(json.dumps(report.to_dict()))
"""


def test_the_python_api_runs_workers_from_a_script_without_a_main_guard(raw, tmp_path):
    script, runs, out = tmp_path / "prep.py", tmp_path / "runs.txt", tmp_path / "out"
    script.write_text(SCRIPT)
    proc = subprocess.run([sys.executable, str(script), str(raw), str(out), str(runs)], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    assert runs.read_text() == "ran\n"  # the workers did not re-run the script
    printed = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(printed["done"]) == SEQUENCES and not printed["failed"]
    assert json.loads((out / "preprocess_report.json").read_text()) == printed  # the command's report, too


def _workers_of(pid: int) -> list[int]:
    found = []
    for child in _descendants(pid):
        try:
            if b"ctxpose.data.h36m.workers" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.append(child)
        except OSError:
            continue
    return found


def test_a_worker_that_dies_fails_only_its_sequence_and_says_how(raw, tmp_path):
    killed: list[int] = []

    def kill_one_worker(event: str, info: dict) -> None:
        if event == "frames" and not killed:
            victim = _workers_of(os.getpid())[0]
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)

    opts = PreprocessOptions(image_size=32, workers=2, train_every=4, cameras=("54138969",))
    report = preprocess_h36m(raw, tmp_path / "out", opts, progress=kill_one_worker)
    assert killed and len(report.failed) == 1 and len(report.done) == SEQUENCES - 1  # a new worker took over
    (key, error), = report.failed.items()
    assert error == "its worker process died (killed by signal 9 (SIGKILL; out of memory?))"
    again = preprocess_h36m(raw, tmp_path / "out", opts)
    assert [r.key for r in again.done] == [key] and again.ok
    assert not _workers_of(os.getpid())


def test_a_bug_in_a_worker_keeps_its_traceback(raw, tmp_path):
    job = SequenceJob(seq=metadata.sequence("S1", "Walking-1"), cameras={}, nominal_hw={},
                      files={"D3_Positions": raw / metadata.raw_relpath("D3_Positions", "S1", "Walking 1")},
                      frames=None, out_dir=tmp_path, part_path=tmp_path / "part.npz", image_size=32,
                      jpeg_quality=90, bbox_source="poses", bbox_scale=1.0, skeleton=get_skeleton())
    results: list = []
    with pytest.raises(WorkerCrash, match=r"(?s)preprocessing S1/Walking-1 failed in a worker.*Traceback.*TypeError"):
        run_in_workers([job], 1, lambda n: None, results.append)
    assert results == [] and not _workers_of(os.getpid())


def test_an_output_a_worker_cannot_write_stops_the_run_in_one_line(raw, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "images").write_bytes(b"a file where the crops' folder goes")
    with pytest.raises(OutputError, match=r"^\S*images/S1/\S+/54138969/000000\.jpg: cannot write \(Not a directory\)$"):
        preprocess_h36m(raw, out, PreprocessOptions(image_size=32, workers=2, cameras=("54138969",)))
    assert not _workers_of(os.getpid())
