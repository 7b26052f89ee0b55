"""``ctxpose fetch-weights`` end to end with the shipped registry and a local mirror (127.0.0.1 only)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from ctxpose.cli.app import app
from ctxpose.data.h36m import metadata
from ctxpose.weights.registry import RegistryError, load_registry
from tests.cli.in_process import run_in_process
from tests.unit import weights_fixtures as W

runner = CliRunner()
REG = load_registry()
LIMBS = REG.get("limb-lengths").dest
VAL = REG.get("algebraic-results-val").dest
NO_INTERNET = {"HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9",
               "NO_PROXY": "127.0.0.1,localhost"}


@pytest.fixture(autouse=True)
def no_real_internet(monkeypatch):
    for k, v in NO_INTERNET.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("CTXPOSE_MIRROR", raising=False)
    monkeypatch.delenv("CTXPOSE_DATA", raising=False)


@pytest.fixture
def mirror(httpserver, tmp_path):
    files = W.FileServer(httpserver)
    files.add(LIMBS, W.Served(W.limb_h5_bytes(tmp_path)))
    files.add(VAL, W.Served(W.results_pickle_bytes(2181)))
    return files


def test_help_shows_examples():
    result = runner.invoke(app, ["fetch-weights", "--help"])
    assert result.exit_code == 0 and "Example" in result.output and "ctxpose fetch-weights --list" in result.output


def test_fetch_through_a_mirror_then_list(tmp_path, mirror):
    root = tmp_path / "data"
    result = runner.invoke(app, ["fetch-weights", "limb-lengths", "algebraic-results-val", "--root", str(root),
                                 "--mirror", mirror.prefix, "--json", str(tmp_path / "fetch.json")])
    assert result.exit_code == 0, result.output
    assert (root / LIMBS).is_file() and (root / VAL).is_file()
    with np.load((root / VAL).with_suffix(".npz"), allow_pickle=False) as z:
        assert z["keypoints_3d"].shape == (2181, 17, 3)
    with np.load(root / VAL.replace("val.pkl", "val_predictions.npz"), allow_pickle=False) as z:
        s11_dir2 = metadata.sequence("S11", "Directions-2").num_frames
        assert len(z["frame"]) == 2181 * 4 - len(range(0, s11_dir2, 64))  # S11 Directions-2 has 3 cameras
    report = {r["name"]: r for r in json.loads((tmp_path / "fetch.json").read_text())}
    assert report["limb-lengths"]["action"] == "downloaded" and report["algebraic-results-val"]["ok"]
    lock = json.loads((root / "ctxpose-weights.lock").read_text())["files"]
    assert set(lock) == {"limb-lengths", "algebraic-results-val"}
    result = runner.invoke(app, ["fetch-weights", "--list", "--root", str(root), "--json", str(tmp_path / "l.json")])
    assert result.exit_code == 0, result.output
    states = {r["name"]: r["state"] for r in json.loads((tmp_path / "l.json").read_text())}
    assert states["limb-lengths"] == "verified" and states["contextpose-h36m"] == "missing"
    assert "none published" in result.output and "trust on first use" in result.output


def test_env_root_and_mirror(tmp_path, mirror, monkeypatch):
    monkeypatch.setenv("CTXPOSE_DATA", str(tmp_path / "envroot"))
    monkeypatch.setenv("CTXPOSE_MIRROR", mirror.prefix)
    result = runner.invoke(app, ["fetch-weights", "limb-lengths"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "envroot" / LIMBS).is_file()


@pytest.mark.slow
def test_wrong_model_is_one_red_line_and_nothing_placed(tmp_path, httpserver, tiny_ckpt):
    files = W.FileServer(httpserver)
    files.add(REG.get("contextpose-backbone").dest, W.Served(tiny_ckpt))
    root = tmp_path / "data"
    proc = run_in_process("fetch-weights", "contextpose-backbone", "--root", str(root), "--mirror", files.prefix)
    assert proc.returncode == 1, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "backbone_weights.pth: not the contextpose-backbone file" in errors[0]
    assert "Traceback" not in proc.stderr and not (root / REG.get("contextpose-backbone").dest).exists()


def test_from_folder_then_verify(tmp_path):
    usb = tmp_path / "usb"
    usb.mkdir()
    (usb / "mean_and_std_limb_length.h5").write_bytes(W.limb_h5_bytes(tmp_path))
    (usb / "val.pkl").write_bytes(W.results_pickle_bytes(2181))
    root = tmp_path / "data"
    result = runner.invoke(app, ["fetch-weights", "--from", str(usb), "--root", str(root)])
    assert result.exit_code == 0, result.output
    assert (root / LIMBS).read_bytes() == (usb / "mean_and_std_limb_length.h5").read_bytes()
    assert runner.invoke(app, ["fetch-weights", "--verify", "--root", str(root)]).exit_code == 0
    (root / LIMBS).write_bytes(b"changed")
    result = runner.invoke(app, ["fetch-weights", "--verify", "--root", str(root)])
    assert result.exit_code == 1 and "differs from the expected" in result.output


def test_nothing_to_do_is_a_usage_error(tmp_path):
    result = runner.invoke(app, ["fetch-weights", "--root", str(tmp_path)])
    assert result.exit_code == 2 and "nothing to do" in result.output
    result = runner.invoke(app, ["fetch-weights", "no-such-file", "--root", str(tmp_path)])
    assert isinstance(result.exception, RegistryError)  # ctxpose's main() prints it as one red line, exit 1
    assert "unknown artifact 'no-such-file'" in str(result.exception) and "--list" in str(result.exception)
