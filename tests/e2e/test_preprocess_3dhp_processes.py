"""``preprocess 3dhp --workers 2`` as processes. It runs on the runner ``preprocess h36m`` runs on
(:class:`ctxpose.data.preprocessing.Run`), whose process guarantees are tested once, through ``preprocess h36m``
(tests/e2e/test_preprocess_processes.py: Ctrl-C to the group, to the parent and SIGTERM; SIGKILL; a dying
worker; a script calling the API with and without a main guard). Here what is 3DHP's own: a Ctrl-C keeps its
finished sequences in its labels and a rerun completes them, a dying worker fails only its sequence and a rerun
redoes it, parallel = serial.

The command runs in its own session; processes are read through /proc, outputs through the file system and
the labels with ``np.load`` and OpenCV (helpers in :mod:`tests.e2e.process_tools`).
"""

from __future__ import annotations

import json
import os
import sys

import cv2
import numpy as np
import pytest

from ctxpose.data.mpi_inf_3dhp import metadata
from ctxpose.data.mpi_inf_3dhp.preprocess import Preprocess3DHPOptions, preprocess_3dhp
from ctxpose.data.mpi_inf_3dhp.synthesize import synthesize_3dhp
from tests.e2e.process_tools import (
    WorkerKiller,
    interrupt,
    start,
    the_killed_sequence,
    workers_of,
)

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")]

SEQUENCES = len(metadata.SEQUENCES)
FRAMES = 150
VALID = sum(i % 5 != 2 for i in range(FRAMES))  # the synthetic set marks every 5th frame (from 2) not valid
ARGS = ("--workers", "2", "--image-size", "48")


@pytest.fixture(scope="module")
def test_set(tmp_path_factory):
    return synthesize_3dhp(tmp_path_factory.mktemp("3dhp"), n_frames=FRAMES, size=512, seed=3).test_set


def _labels(out) -> dict[str, np.ndarray]:
    """labels.npz read with numpy alone (meta as JSON)."""
    with np.load(out / "labels.npz", allow_pickle=False) as z:
        return {**{k: z[k] for k in z.files if k != "meta"}, "meta": json.loads(str(z["meta"]))}


def test_ctrl_c_stops_promptly_and_records_every_finished_sequence(test_set, tmp_path):
    out = tmp_path / "out"
    recorded = interrupt(start("preprocess", "3dhp", str(test_set), str(out), *ARGS), out, "group", SEQUENCES)
    labels = _labels(out)  # the finished sequences are in the labels, with readable crops
    assert labels["meta"]["sequences"] == [s for s in metadata.SEQUENCES if s in recorded]
    assert sorted(set(labels["sequence"].tolist())) == sorted(recorded) and len(labels["frame"]) == VALID * len(
        recorded)
    assert all(cv2.imread(str(out / rel)) is not None for rel in labels["image"])

    again = preprocess_3dhp(test_set, out, Preprocess3DHPOptions(image_size=48))
    assert sorted(again.skipped) == sorted(recorded) and len(again.done) == SEQUENCES - len(recorded) and again.ok
    final = _labels(out)
    assert final["meta"]["sequences"] == list(metadata.SEQUENCES) and len(final["frame"]) == SEQUENCES * VALID
    assert len(np.unique(final["image"])) == len(final["image"])


def test_a_worker_that_dies_fails_only_its_sequence_and_a_rerun_redoes_it(test_set, tmp_path):
    out, killer = tmp_path / "out", WorkerKiller()
    opts = Preprocess3DHPOptions(image_size=32, workers=2)
    key = the_killed_sequence(preprocess_3dhp(test_set, out, opts, progress=killer), killer, SEQUENCES)
    assert key not in _labels(out)["meta"]["sequences"]
    again = preprocess_3dhp(test_set, out, opts)
    assert [r.key for r in again.done] == [key] and again.ok and len(again.skipped) == SEQUENCES - 1
    assert not workers_of(os.getpid())


def test_parallel_workers_give_the_same_labels_as_one_process(test_set, tmp_path):
    serial = preprocess_3dhp(test_set, tmp_path / "one", Preprocess3DHPOptions(image_size=32, sequences=("TS1", "TS5")))
    parallel = preprocess_3dhp(test_set, tmp_path / "two", Preprocess3DHPOptions(image_size=32, sequences=(
        "TS1", "TS5"), workers=2))
    assert serial.ok and parallel.ok
    one, two = _labels(tmp_path / "one"), _labels(tmp_path / "two")
    for name in one:
        if name != "meta":
            np.testing.assert_array_equal(two[name], one[name], err_msg=name)
    for rel in one["image"][::25]:
        assert (tmp_path / "two" / rel).read_bytes() == (tmp_path / "one" / rel).read_bytes()
