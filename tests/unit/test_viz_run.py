"""``visualize run``: the trainer's scalars.jsonl / metrics.json read as the trainer writes them (RunLogger),
resumed steps and a cut-off last line handled, the summary checked by hand, the picture read back."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from ctxpose.engine.logging import RunLogger
from ctxpose.errors import DataError
from ctxpose.viz import run as vr
from ctxpose.viz.output import ImageSink
from ctxpose.viz.style import Style

VAL = [140.0, 90.0, 95.0]


def _write_run(run_dir: Path, steps_per_epoch: int = 5) -> None:
    """A 3-epoch run through the trainer's own logger, then a resume that repeats steps 9..10 with new values."""
    log = RunLogger(run_dir)
    for step in range(1, 3 * steps_per_epoch + 1):
        log.scalars(step, {"loss/total": 100.0 / step, "loss/keypoints": 50.0 / step,
                           "lr/backbone": 1e-3 if step <= 10 else 1e-4, "samples_per_s": 20.0}, prefix="train")
        if step % steps_per_epoch == 0:
            log.scalars(step, {"mpjpe": VAL[step // steps_per_epoch - 1], "pck_3dhp": 50.0}, prefix="val")
    for step in (9, 10):  # resumed from step 8: the last values count
        log.scalars(step, {"loss/total": -1.0}, prefix="train")
    log.close()
    epochs = [{"epoch": e, "step": (e + 1) * steps_per_epoch, "train": {"total": 10.0 - e},
               "val": {"mpjpe": VAL[e], "pa_mpjpe": VAL[e] - 10, "pck_3dhp": 50.0 + 10.0 * e}} for e in range(3)]
    (run_dir / "metrics.json").write_text(json.dumps(epochs))


def test_curves_and_summary_from_a_run_folder(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    _write_run(run)
    with (run / "scalars.jsonl").open("a") as f:
        f.write('{"step": 16, "train/loss/to')  # training is writing right now
    loaded = vr.load_run(run)
    steps, values = loaded.steps["train/loss/total"]
    assert steps.tolist() == list(range(1, 16))
    assert values[8] == values[9] == -1.0 and values[10] == pytest.approx(100.0 / 11)
    with ImageSink(tmp_path / "viz", tensorboard=tmp_path / "tb", tag="viz/run") as sink:
        summary = vr.visualize_run(run, sink, Style(size=256))
    image = cv2.imread(str(tmp_path / "viz" / "curves.png"))
    assert image is not None and image.shape[1] == round(3 * 256 * 1.05)  # 3 panels a row
    assert summary["val"]["mpjpe"] == {"last": 95.0, "best": 90.0, "best_step": 10.0}
    assert summary["val"]["pck_3dhp"]["best"] == pytest.approx(70.0)  # higher is better for scores
    assert summary["last"]["train/lr/backbone"] == pytest.approx(1e-4)
    assert json.loads((tmp_path / "viz" / "summary.json").read_text()) == summary
    events = EventAccumulator(str(tmp_path / "tb"), size_guidance={"images": 0}).Reload()
    assert events.Images("viz/run/curves")[0].width == image.shape[1]


def test_smoothing_matches_a_loop() -> None:
    values = np.array([1.0, 3.0, 2.0, 8.0])
    w, acc, norm, ref = 0.6, 0.0, 0.0, []
    for v in values:
        acc, norm = w * acc + (1 - w) * v, w * norm + (1 - w)
        ref.append(acc / norm)
    np.testing.assert_allclose(vr.smooth(values, w), ref)
    np.testing.assert_allclose(vr.smooth(values, 0.0), values)


def test_metrics_json_alone_is_enough(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _write_run(run)
    (run / "scalars.jsonl").unlink()
    with ImageSink(tmp_path / "viz") as sink:
        summary = vr.visualize_run(run, sink, Style(size=128))
    assert summary["val"]["pa_mpjpe"]["best"] == 80.0


def test_bad_run_folders_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="run folder not found"):
        vr.load_run(tmp_path / "none")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no scalars.jsonl or metrics.json"):
        vr.load_run(tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "scalars.jsonl").write_text('{"step": 1, "train/loss/total": 1}\nnot json\n{"step": 3}\n')
    with pytest.raises(DataError, match=r"scalars.jsonl:2: not a JSON object with a 'step'"):
        vr.load_run(bad)
    (bad / "scalars.jsonl").unlink()
    (bad / "metrics.json").write_text("{oops")
    with pytest.raises(DataError, match="metrics.json: not readable JSON"):
        vr.load_run(bad)
    with pytest.raises(DataError, match="--smoothing"), ImageSink(tmp_path / "o") as sink:
        vr.visualize_run(bad, sink, smoothing=1.0)
