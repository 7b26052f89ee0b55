"""``ctxpose preprocess h36m`` and ``ctxpose synthesize h36m`` as translators, plus one real tiny run."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from ctxpose.cli.app import app
from ctxpose.data.h36m import metadata
from ctxpose.data.h36m import preprocess as preprocess_module
from ctxpose.data.h36m.preprocess import PreprocessOptions, PreprocessReport
from ctxpose.data.labels import load_labels

runner = CliRunner()


def run_main(capsys, monkeypatch, *args: str) -> tuple[int, str, str]:
    """``ctxpose ARGS`` in this process through the entry point users run: (exit status, stdout, stderr)."""
    from ctxpose.cli import main

    monkeypatch.setattr(sys, "argv", ["ctxpose", *args])
    try:
        main()
        code = 0
    except SystemExit as e:
        code = int(e.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


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

    monkeypatch.setattr(preprocess_module, "preprocess_h36m", fake)  # the command imports it when it runs
    result = runner.invoke(app, [
        "preprocess", "h36m", str(tmp_path), str(tmp_path / "out"), "--image-size", "256", "--jpeg-quality", "90",
        "--subjects", "S1,S9", "--actions", "Walking", "--cameras", "54138969", "--workers", "3",
        "--bbox-source", "poses", "--bbox-scale", "1.2", "--all-frames", "--skeleton", "contextpose17"])
    assert result.exit_code == 0, result.output
    assert seen["opts"] == PreprocessOptions(
        image_size=256, jpeg_quality=90, train_every=1, test_every=1, bbox_source="poses", bbox_scale=1.2,
        subjects=("S1", "S9"), actions=("Walking",), cameras=("54138969",), workers=3, skeleton="contextpose17")
    result = runner.invoke(app, ["preprocess", "h36m", str(tmp_path), str(tmp_path / "out"), "--selection", "original"])
    assert result.exit_code == 0, result.output
    assert seen["opts"] == PreprocessOptions(selection="original")
    result = runner.invoke(app, ["preprocess", "h36m", str(tmp_path), str(tmp_path / "out"), "--selection", "motion"])
    assert result.exit_code == 2 and "'original'" in result.output  # a usage error listing the choices


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
    assert result.output.count("Walking 1.60457274.mp4") == 1  # printed once, as it happens
    assert "S1/Walking-1/60457274" in result.output and "failed (listed above)" in result.output


def test_bad_option_is_one_red_line(tmp_path, capsys, monkeypatch):
    code, _, err = run_main(capsys, monkeypatch, "preprocess", "h36m", str(tmp_path), str(tmp_path / "o"),
                            "--workers", "0")
    assert code == 1
    assert "error:" in err and "--workers 0" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "o").exists()
    result = runner.invoke(app, ["preprocess", "h36m", str(tmp_path), str(tmp_path / "o"), "--bbox-source", "nope"])
    assert result.exit_code == 2 and "'masks'" in result.output  # a usage error listing the choices


@pytest.mark.parametrize("content", ["empty", "unrelated"])
def test_raw_folder_without_sequences_is_one_line_and_writes_nothing(tmp_path, capsys, monkeypatch, content):
    raw = tmp_path / "raw"
    raw.mkdir()
    if content == "unrelated":
        (raw / "README.txt").write_text("downloads go here")
    code, _, err = run_main(capsys, monkeypatch, "preprocess", "h36m", str(raw), str(tmp_path / "out"))
    assert code == 1
    assert err.startswith("error: no Human3.6M sequences under") and "(expected e.g." in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, message", [
    (["--frames", "0"], "--frames 0: expected at least 1 pose frame"),
    (["--frames", "-3"], "--frames -3: expected at least 1"),
    (["--size", "0"], "--size 0: expected a frame width from 64 to 4000 px"),
    (["--size", "30"], "--size 30: expected a frame width from 64 to 4000 px"),
    (["--size", "100000"], "--size 100000: expected"),
    (["--seed", "-1"], "--seed -1: expected a number >= 0"),
    (["--subjects", ","], "--subjects/--actions select no sequence"),
    (["--actions", "Jumping"], "--actions: unknown action 'Jumping'"),
])
def test_synthesize_refuses_bad_values_in_one_line(tmp_path, capsys, monkeypatch, args, message):
    code, _, err = run_main(capsys, monkeypatch, "synthesize", "h36m", str(tmp_path / "raw"), *args)
    assert code == 1 and err.startswith("error: ") and message in err, err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "raw").exists()


def test_synthesize_into_a_file_or_a_real_download_is_refused(tmp_path, capsys, monkeypatch):
    target = tmp_path / "raw.tgz"
    target.write_bytes(b"not a folder")
    code, _, err = run_main(capsys, monkeypatch, "synthesize", "h36m", str(target))
    assert code == 1 and f"{target}: exists and is not a folder" in err and len(err.strip().splitlines()) == 1
    assert target.read_bytes() == b"not a folder"

    real = tmp_path / "h36m"
    video = real / metadata.raw_relpath("Videos", "S1", "Walking 1", "54138969")
    video.parent.mkdir(parents=True)
    video.write_bytes(b"a real video")
    code, _, err = run_main(capsys, monkeypatch, "synthesize", "h36m", str(real), "--subjects", "S1", "--actions",
                            "Walking-1", "--size", "64", "--frames", "1")
    assert code == 1 and "exists and was not written by `ctxpose synthesize`" in err and str(video) in err
    assert video.read_bytes() == b"a real video" and sorted(p.name for p in real.iterdir()) == ["S1"]
