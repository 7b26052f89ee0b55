"""``ctxpose preprocess h36m`` and ``ctxpose synthesize h36m`` as translators, plus one real tiny run."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
from typer.testing import CliRunner

from ctxpose.cli import preprocess as preprocess_cli
from ctxpose.cli.app import app
from ctxpose.data.h36m import metadata
from ctxpose.data.h36m.preprocess import PreprocessOptions, PreprocessReport
from ctxpose.data.labels import load_labels

runner = CliRunner()


def test_help_shows_an_example():
    result = runner.invoke(app, ["preprocess", "h36m", "--help"])
    assert result.exit_code == 0, result.output
    assert "Example" in result.output and "ctxpose preprocess h36m" in result.output
    result = runner.invoke(app, ["synthesize", "h36m", "--help"])
    assert result.exit_code == 0 and "--archives" in result.output


def test_options_are_translated(tmp_path, monkeypatch):
    seen = {}

    def fake(raw, out, opts, progress=None):
        seen.update(raw=raw, out=out, opts=opts)
        progress("plan", {"sequences": 1, "frames": 4})
        progress("frames", {"n": 4})
        return PreprocessReport(frames_written=4, bytes_written=1000, seconds=1.0)

    monkeypatch.setattr(preprocess_cli, "preprocess_h36m", fake)
    result = runner.invoke(app, [
        "preprocess", "h36m", str(tmp_path), str(tmp_path / "out"), "--image-size", "256", "--jpeg-quality", "90",
        "--subjects", "S1,S9", "--actions", "Walking", "--cameras", "54138969", "--workers", "3",
        "--bbox-source", "poses", "--bbox-scale", "1.2", "--all-frames"])
    assert result.exit_code == 0, result.output
    assert seen["opts"] == PreprocessOptions(
        image_size=256, jpeg_quality=90, train_every=1, test_every=1, bbox_source="poses", bbox_scale=1.2,
        subjects=("S1", "S9"), actions=("Walking",), cameras=("54138969",), workers=3)
    report = json.loads((tmp_path / "out" / "preprocess_report.json").read_text())
    assert report["frames_written"] == 4 and report["bytes_per_frame"] == 250.0


def test_synthesize_then_preprocess_real_run(tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "out"
    result = runner.invoke(app, ["synthesize", "h36m", str(raw), "--subjects", "S1", "--actions", "Walking-1",
                                 "--frames", "3", "--size", "160"])
    assert result.exit_code == 0, result.output
    assert (raw / metadata.raw_relpath("Videos", "S1", "Walking 1", "54138969")).is_file()
    result = runner.invoke(app, ["preprocess", "h36m", str(raw), str(out), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "S1/Walking-1" in result.output and not out.exists()
    result = runner.invoke(app, ["preprocess", "h36m", str(raw), str(out), "--image-size", "48", "--train-every", "1"])
    assert result.exit_code == 0, result.output
    labels = load_labels(out / "labels.npz")
    assert len(labels) == 3 * 4 and np.all(labels.subject == "S1")
    report = json.loads((out / "preprocess_report.json").read_text())
    assert report["frames_written"] == 12 and not report["failed"]


def test_failure_exits_non_zero_with_the_file_named(tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "out"
    assert runner.invoke(app, ["synthesize", "h36m", str(raw), "--subjects", "S1", "--actions", "Walking-1",
                               "--frames", "2", "--size", "160"]).exit_code == 0
    (raw / metadata.raw_relpath("Videos", "S1", "Walking 1", "60457274")).write_bytes(b"broken")
    result = runner.invoke(app, ["preprocess", "h36m", str(raw), str(out)])
    assert result.exit_code == 1
    assert "Walking 1.60457274.mp4" in result.output


def test_bad_option_is_one_red_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "ctxpose", "preprocess", "h36m", str(tmp_path), str(tmp_path / "o"),
                           "--bbox-source", "nope"], capture_output=True, text=True)
    assert proc.returncode == 1
    assert "error:" in proc.stderr and "--bbox-source 'nope'" in proc.stderr and "Traceback" not in proc.stderr
