"""``preprocess h36m --workers 2`` as processes: signals, dying and failing workers, scripts calling the API.

The signal tests run the real command in its own session (so a group signal reaches it and its workers, not
pytest) and inspect the processes through /proc and the output folder through the file system.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import cv2
import numpy as np
import pytest

from ctxpose.data.h36m import metadata
from ctxpose.data.h36m.preprocess import PreprocessOptions, preprocess_h36m
from ctxpose.data.h36m.process_sequence import SequenceJob
from ctxpose.data.h36m.synthesize import synthesize_h36m
from ctxpose.data.labels import load_labels
from ctxpose.data.preprocessing import WorkerCrash, run_in_workers
from ctxpose.errors import OutputError
from ctxpose.skeleton import get_skeleton
from tests.e2e.process_tools import (
    WorkerKiller,
    interrupt,
    kill_parent,
    run_api_script,
    start,
    the_killed_sequence,
    workers_of,
)

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")]

SEQUENCES = 6
ARGS = ("--workers", "2", "--train-every", "1", "--image-size", "48")


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    root = tmp_path_factory.mktemp("raw")
    synthesize_h36m(root, subjects=["S1"], actions=["Walking", "TakingPhoto", "Directions"], n_frames=40, size=128)
    return root


@pytest.mark.parametrize("target", ["group", "parent", "term"])
def test_ctrl_c_stops_promptly_and_records_every_finished_sequence(raw, tmp_path, target):
    """Ctrl-C in a terminal signals the whole group ("group"); ``kill -INT`` only the command ("parent"),
    ``kill`` (SIGTERM) likewise ("term")."""
    out = tmp_path / "out"
    recorded = interrupt(start("preprocess", "h36m", str(raw), str(out), *ARGS), out, target, SEQUENCES)
    labels = load_labels(out / "labels.npz")  # the finished sequences are in the labels
    assert labels.meta["sequences"] == sorted(recorded) and len(labels) == sum(v["rows"] for v in recorded.values())
    assert all(cv2.imread(str(out / rel)) is not None for rel in labels.image)

    if target != "group":
        return  # the re-run below is the same for both
    again = preprocess_h36m(raw, out, PreprocessOptions(train_every=1, image_size=48))
    assert sorted(again.skipped) == sorted(recorded) and len(again.done) == SEQUENCES - len(recorded)
    final = load_labels(out / "labels.npz")
    assert len(final) == SEQUENCES * 4 * 40 and len(np.unique(final.image)) == len(final)


def test_sigkill_of_the_command_takes_its_workers_with_it(raw, tmp_path):
    out = tmp_path / "out"
    kill_parent(start("preprocess", "h36m", str(raw), str(out), *ARGS), out, SEQUENCES)


def test_the_python_api_runs_workers_from_a_script_with_a_main_guard(raw, tmp_path):
    printed = run_api_script(tmp_path, raw, "ctxpose.data.h36m.preprocess", "preprocess_h36m", "PreprocessOptions",
                             'image_size=32, workers=2, train_every=8, cameras=("54138969",)')
    assert len(printed["done"]) == SEQUENCES and not printed["failed"]


def test_a_script_without_a_main_guard_is_told_to_add_one(raw, tmp_path):
    proc = run_api_script(tmp_path, raw, "ctxpose.data.h36m.preprocess", "preprocess_h36m", "PreprocessOptions",
                          'image_size=32, workers=2, cameras=("54138969",)', guard=False)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 1 and last.startswith("ctxpose.data.preprocessing.WorkerCrash: a worker process could "
                                                    "not start (exit code 1")
    assert 'under `if __name__ == "__main__":`' in last and not workers_of(os.getpid())
    assert not any((tmp_path / "out").rglob("*.jpg"))  # no sequence was cropped


def test_a_worker_that_dies_fails_only_its_sequence_and_says_how(raw, tmp_path):
    killer = WorkerKiller()
    opts = PreprocessOptions(image_size=32, workers=2, train_every=4, cameras=("54138969",))
    key = the_killed_sequence(preprocess_h36m(raw, tmp_path / "out", opts, progress=killer), killer, SEQUENCES)
    again = preprocess_h36m(raw, tmp_path / "out", opts)
    assert [r.key for r in again.done] == [key] and again.ok
    assert not workers_of(os.getpid())


def test_a_bug_in_a_worker_keeps_its_traceback(raw, tmp_path):
    job = SequenceJob(seq=metadata.sequence("S1", "Walking-1"), cameras={}, nominal_hw={},
                      files={"D3_Positions": raw / metadata.raw_relpath("D3_Positions", "S1", "Walking 1")},
                      frames=None, out_dir=tmp_path, part_path=tmp_path / "part.npz", image_size=32,
                      jpeg_quality=90, bbox_source="poses", bbox_scale=1.0, skeleton=get_skeleton("contextpose17"))
    results: list = []
    with pytest.raises(WorkerCrash, match=r"(?s)preprocessing S1/Walking-1 failed in a worker.*Traceback.*TypeError"):
        run_in_workers([job], 1, lambda n: None, lambda *done: results.append(done))
    assert results == [] and not workers_of(os.getpid())


def test_an_output_a_worker_cannot_write_stops_the_run_in_one_line(raw, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "images").write_bytes(b"a file where the crops' folder goes")
    with pytest.raises(OutputError, match=r"^\S*images/S1/\S+/54138969/000000\.jpg: cannot write \(Not a directory\)$"):
        preprocess_h36m(raw, out, PreprocessOptions(image_size=32, workers=2, cameras=("54138969",)))
    assert not workers_of(os.getpid())


# StopSignals.worker() (a worker's SIGTERM) around one write_output whose writer waits for the test between halves.
_STOPPED = """
import sys
from pathlib import Path
import ctxpose.data.preprocessing as prep
from ctxpose.utils.signals import StopSignals

def two_halves(path, data):
    tmp = path.with_name("." + path.name + ".tmp")
    tmp.write_bytes(data[:3])
    print("writing", flush=True)
    sys.stdin.readline()
    tmp.write_bytes(data)
    tmp.replace(path)

prep.atomic_write_bytes = two_halves
StopSignals.worker()
if sys.argv[2] == "write":
    prep.write_output(Path(sys.argv[1]), b"complete crop")
print("idle", flush=True)
sys.stdin.readline()
"""


@pytest.mark.parametrize("writing", [True, False])
def test_a_stopped_worker_completes_the_file_it_is_writing_then_exits(tmp_path, writing):
    target = tmp_path / "crop.jpg"
    proc = subprocess.Popen([sys.executable, "-c", _STOPPED, str(target), "write" if writing else "idle"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == ("writing" if writing else "idle")
    proc.send_signal(signal.SIGTERM)
    if writing:
        proc.stdin.write("go on\n")
        proc.stdin.flush()
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    proc.stdin.close()
    assert proc.stdout.read() == ""  # it stopped right after the write (or at once when idle)
    proc.stdout.close()
    assert sorted(f.name for f in tmp_path.iterdir()) == (["crop.jpg"] if writing else [])
    assert not writing or target.read_bytes() == b"complete crop"
