"""fetch-weights library: downloads from a local server, share-link resolvers on recorded responses,
verification of what arrives, the lock file, --from and --verify."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import time
from dataclasses import replace

import numpy as np
import pytest
import torch

from ctxpose.config import load_config
from ctxpose.data.h36m.selection import original_test_table
from ctxpose.data.labels import Labels
from ctxpose.data.predictions import keyed_coverage, load_pickle, load_root_predictions
from ctxpose.errors import DataError
from ctxpose.models.build import build_model
from ctxpose.skeleton import get_skeleton
from ctxpose.weights import fetch as F
from ctxpose.weights.http import DownloadError, HttpSettings, SafeSession, check_url, download
from ctxpose.weights.registry import RegistryError, load_registry, parse_registry
from ctxpose.weights.resolvers import (
    Endpoints,
    gdrive_confirmed_url,
    gdrive_file_id,
    onedrive_share_token,
    resolve,
)
from ctxpose.weights.verify import meta_model
from tests.unit import weights_fixtures as W

# no retries, no back-off; time-outs long enough for the 64 MB tiny checkpoint from the local server on a loaded machine
# (a 2 s read time-out retried it under four parallel test workers); the time-out tests set their own
FAST = HttpSettings(connect_timeout=20.0, read_timeout=20.0, retries=0, backoff=0.0, chunk_size=1 << 16)


@pytest.fixture(autouse=True)
def no_real_internet(monkeypatch):
    """Any request that is not to 127.0.0.1 goes to a dead proxy and fails at once."""
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture
def files(httpserver):
    return W.FileServer(httpserver)


def _options(root, entries, settings=FAST, **kw):
    return F.FetchOptions(root=root, registry=parse_registry(W.registry_toml(entries)), settings=settings, **kw)


def _leftovers(folder):
    return sorted(p.name for p in folder.rglob("*") if p.is_file() and not p.name.endswith(".lock"))


# ---------------------------------------------------------------------- downloads


def test_clean_download_is_verified_pinned_and_not_fetched_twice(tmp_path, files, tiny_ckpt):
    url = files.add("tiny.pth", W.Served(tiny_ckpt))
    opts = _options(tmp_path, [{"name": "tiny", "kind": "network", "dest": "pretrained/tiny.pth",
                                "model": W.TINY_MODEL_TOML, "urls": [url]}])
    events = []
    [out] = F.fetch(opts, ["tiny"], lambda name, event, n: events.append(event))
    assert out.ok and out.action == "downloaded", out.detail
    dest = tmp_path / "pretrained" / "tiny.pth"
    assert dest.read_bytes() == tiny_ckpt and _leftovers(tmp_path) == ["tiny.pth"]
    state = torch.load(dest, map_location="cpu", weights_only=True)  # an independent reader of the result
    model = build_model(load_config(W.REPO / "configs" / "tiny_cpu.yaml"), meta_prior())
    assert {k.removeprefix("module.") for k in state} == set(model.state_dict())
    lock = json.loads((tmp_path / F.LOCK_NAME).read_text())
    assert lock["files"]["tiny"]["sha256"] == hashlib.sha256(tiny_ckpt).hexdigest()
    assert {"start", "total", "advance", "done"} <= set(events)
    assert oct(dest.stat().st_mode & 0o777) == oct(0o666 & ~_umask())
    n_requests = len(files.log)
    [again] = F.fetch(opts, ["tiny"])
    assert again.ok and again.action == "verified" and len(files.log) == n_requests


def meta_prior():
    from ctxpose.skeleton import LimbPrior

    return LimbPrior(torch.full((16,), 300.0), torch.full((16,), 30.0))


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_dropped_connection_resumes_with_range_on_the_next_run(tmp_path, files):
    data = W.results_pickle_bytes(2181)
    url = files.add("val.pkl", W.Served(data, drop_first=True))
    entries = [{"name": "val", "kind": "results", "split": "val", "rows": 2181, "dest": "r/val.pkl", "urls": [url],
                "sha256": W.sha256(data)}]
    [first] = F.fetch(_options(tmp_path, entries), ["val"])
    part = tmp_path / "r" / "val.pkl.part"
    assert not first.ok and "connection" in first.detail and "kept" in first.detail and "\n" not in first.detail
    assert 0 < part.stat().st_size < len(data) and not (tmp_path / "r" / "val.pkl").exists()
    have = part.stat().st_size
    [second] = F.fetch(_options(tmp_path, entries), ["val"])
    assert second.ok, second.detail
    assert files.log[-1] == ("val.pkl", f"bytes={have}-", 206)
    assert (tmp_path / "r" / "val.pkl").read_bytes() == data and not part.exists()
    kp, idx = W.results(2181)
    with np.load(tmp_path / "r" / "val.npz", allow_pickle=False) as z:  # the plain copy, no pickle
        np.testing.assert_array_equal(z["keypoints_3d"], kp)
        np.testing.assert_array_equal(z["indexes"], idx)


@pytest.mark.parametrize("stall", [0.0, 1.5], ids=["dropped", "read-time-out"])
def test_bytes_received_before_a_cut_are_kept_and_the_retry_asks_for_the_rest(tmp_path, stall):
    """100 kB of a 600 kB file arrive, less than the 1 MiB read size; then the connection drops (or goes silent
    past the read time-out). The retry's Range starts at byte 100000 exactly and the file's digest is right."""
    data = np.random.default_rng(3).bytes(600_000)
    server = W.CuttingServer(data, cut=100_000, stall=stall)
    part = tmp_path / "weights.bin.part"
    one_try = replace(HttpSettings(), connect_timeout=2.0, read_timeout=0.5, retries=0, backoff=0.0)
    assert one_try.chunk_size == 1 << 20  # the default read size, larger than what arrived
    try:
        with pytest.raises(DownloadError) as cut:
            download(server.url, part, SafeSession(), one_try)
        assert part.read_bytes() == data[:100_000]
        message = str(cut.value)
        assert message.startswith(f"{server.url}: ") and "\n" not in message
        assert "100,000 bytes kept" in message
        if stall:
            assert "read time-out (no data for 0.5 s) at 100,000 bytes after 1 attempts" in message
            assert "connection failed" not in message
        else:
            assert "connection lost at 100,000 bytes" in message
        assert download(server.url, part, SafeSession(), one_try) == len(data)
    finally:
        server.close()
    assert server.ranges == [None, "bytes=100000-"]
    assert hashlib.sha256(part.read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest()


def test_server_without_range_restarts_cleanly_in_the_same_run(tmp_path, files):
    data = W.results_pickle_bytes(2181, seed=1)
    url = files.add("val.pkl", W.Served(data, ranges=False, drop_first=True))
    opts = _options(tmp_path, [{"name": "val", "kind": "results", "split": "val", "dest": "val.pkl", "urls": [url]}],
                    settings=replace(FAST, retries=2))
    events = []
    [out] = F.fetch(opts, ["val"], lambda name, event, n: events.append(event))
    assert out.ok, out.detail
    assert files.log[1][1] is not None and files.log[1][2] == 200  # asked to resume, got the whole file
    assert "restart" in events and (tmp_path / "val.pkl").read_bytes() == data


def test_corrupted_body_names_both_digests_and_leaves_nothing(tmp_path, files):
    data = W.results_pickle_bytes(300)
    url = files.add("val.pkl", W.Served(data, corrupt=True))
    opts = _options(tmp_path, [{"name": "val", "kind": "results", "split": "val", "dest": "r/val.pkl", "urls": [url],
                                "sha256": W.sha256(data)}])
    [out] = F.fetch(opts, ["val"])
    bad = bytearray(data)
    bad[len(bad) // 2] ^= 0xFF
    assert not out.ok and W.sha256(data) in out.detail and W.sha256(bytes(bad)) in out.detail
    assert "r/val.pkl" in out.detail and "\n" not in out.detail
    assert _leftovers(tmp_path) == []


def test_404_and_read_timeout_fail_in_one_line_in_bounded_time(tmp_path, files):
    missing = files.add("gone.h5", W.Served(b"", status=404))
    stalled = files.add("slow.h5", W.Served(b"x" * 100, stall=1.0))
    opts = _options(tmp_path, [{"name": "limbs", "kind": "limb-prior", "dest": "limbs.h5", "urls": [missing, stalled]}],
                    settings=replace(FAST, read_timeout=0.3, retries=1))
    start = time.monotonic()
    [out] = F.fetch(opts, ["limbs"])
    assert time.monotonic() - start < 15  # a 404 and two 0.3 s read timeouts
    assert not out.ok and "\n" not in out.detail
    assert f"{missing}: HTTP 404" in out.detail and "read time-out" in out.detail and "after 2 attempts" in out.detail
    assert "place the file by hand at" in out.detail and "--from" in out.detail


def test_only_https_and_loopback_http_redirects_checked(files, httpserver):
    for url in ("http://example.org/x", "ftp://127.0.0.1/x", "file:///etc/passwd", "https:///nohost"):
        with pytest.raises(DownloadError, match="refused"):
            check_url(url)
    assert check_url("http://127.0.0.1:8000/x") and check_url("https://example.org/x")
    httpserver.expect_request("/redirect").respond_with_data("", status=302,
                                                             headers={"Location": "http://example.org/evil"})
    with pytest.raises(DownloadError, match="refused"):
        download(httpserver.url_for("/redirect"), W.REPO / "never.part", SafeSession(), FAST)
    assert not (W.REPO / "never.part").exists()


# ---------------------------------------------------------------------- what arrives is what it claims


def test_wrong_model_checkpoint_is_rejected(tmp_path, files, tiny_ckpt):
    url = files.add("tiny.pth", W.Served(tiny_ckpt))
    opts = _options(tmp_path, [{"name": "paper", "kind": "network", "dest": "p/paper.pth", "urls": [url, url]}])
    [out] = F.fetch(opts, ["paper"])
    assert not out.ok and "p/paper.pth: not the paper file" in out.detail and "do not fit the model" in out.detail
    assert "\n" not in out.detail and len(files.log) == 1  # not retried from the next URL
    assert _leftovers(tmp_path) == []


def test_malicious_pickle_is_refused_and_not_run(tmp_path, files):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    url = files.add("val.pkl", W.Served(pickle.dumps({"keypoints_3d": Evil(), "indexes": np.arange(3)})))
    opts = _options(tmp_path / "root", [{"name": "val", "kind": "results", "split": "val", "dest": "val.pkl",
                                         "urls": [url]}])
    [out] = F.fetch(opts, ["val"])
    assert not out.ok and "refused to unpickle global" in out.detail and "system" in out.detail
    assert not marker.exists() and _leftovers(tmp_path / "root") == []


def test_memory_bomb_pickle_is_one_line(tmp_path):
    class Huge:
        def __reduce__(self):
            return (np._core.multiarray._reconstruct, (np.ndarray, (10**12,), b"b"))

    data = pickle.dumps({"keypoints_3d": Huge(), "indexes": np.arange(3)}, protocol=2)
    # the case of issue 8: a few hundred bytes (292 there; the exact count depends on what the process pickled
    # before) that ask for a terabyte
    assert len(data) < 400
    (tmp_path / "bomb.pkl").write_bytes(data)
    with pytest.raises(DataError, match=r"bomb.pkl: refused: an array of shape \(1000000000000,\)") as e:
        load_pickle(tmp_path / "bomb.pkl")
    assert "\n" not in str(e.value)


@pytest.mark.filterwarnings("ignore:for .*copying from a non-meta parameter")
@pytest.mark.parametrize(("model", "architecture", "confidences"), [
    ({"architecture": "volumetric", "backbone": {"num_layers": 18}, "volume_net": {"volume_size": 32}},
     "volumetric", False),
    ({"architecture": "algebraic", "backbone": {"num_layers": 18}, "image_shape": [128, 128]}, "algebraic", True),
])
def test_original_weights_of_the_triangulation_models_load_strictly(tmp_path, model, architecture, confidences):
    """A synthetic state dict with the original's key names (written from its module structure, ``module.``
    prefixed as its DDP checkpoints) is verified against the network ctxpose builds and loads into it."""
    from ctxpose.models.build import load_checkpoint
    from ctxpose.weights.registry import Artifact, Url
    from ctxpose.weights.verify import VerificationError, verify_file
    from tests.reference.triangulation_ops import original_network_keys

    ours = build_model(load_config(None, [f"model={json.dumps(model)}", *_loss_overrides(architecture)]))
    shapes = {k: v.shape for k, v in ours.state_dict().items()}
    keys = original_network_keys(architecture, 18, confidences)
    assert sorted(keys) == sorted(shapes)  # the original's names, exactly
    g = torch.Generator().manual_seed(0)
    state = {f"module.{k}": torch.randn(shapes[k], generator=g) if shapes[k].numel() > 1 else torch.ones(shapes[k])
             for k in keys}
    art = Artifact(name="orig", description="", dest="w.pth", kind="network", urls=(Url("https://e.org", "t"),),
                   model=model)
    torch.save(state, tmp_path / "w.pth")
    assert verify_file(art, tmp_path / "w.pth").endswith("tensors fit the network")
    load_checkpoint(ours, tmp_path / "w.pth")
    key = keys[-1]
    torch.testing.assert_close(ours.state_dict()[key], state[f"module.{key}"])
    for broken, message in [({k: v for k, v in state.items() if k != f"module.{keys[3]}"}, "1 missing"),
                            ({**state, f"module.{key}": torch.zeros(3)}, "1 with other shapes")]:
        torch.save(broken, tmp_path / "bad.pth")
        with pytest.raises(VerificationError, match=message) as e:
            verify_file(art, tmp_path / "bad.pth")
        assert "\n" not in str(e.value)


def _loss_overrides(architecture):
    views = [f"{s}.{k}" for s in ("train", "val") for k in ("min_n_views=2", "max_n_views=null")]
    return ["loss.use_global_attention_loss=false",
            f"loss.use_volumetric_ce_loss={'true' if architecture == 'volumetric' else 'false'}",
            *(views if architecture in ("algebraic", "ransac") else [])]


# ---------------------------------------------------------------------- the built-in detector's weights


DETECTOR_DEST = "pretrained/detector/fasterrcnn_mobilenet_v3_large_fpn-fb6a3cc7.pth"  # the shipped entry's dest


def test_detector_weights_are_fetched_prefix_checked_pinned_and_found_by_infer(tmp_path, files):
    from ctxpose.engine.detector import detector_weights
    from ctxpose.errors import ConfigError

    with pytest.raises(ConfigError, match=r"no weights at .*; run `ctxpose fetch-weights person-detector`") as e:
        detector_weights(None, tmp_path)  # nothing fetched yet: one line saying what to run
    assert "\n" not in str(e.value)
    data = W.detector_state_dict_bytes(tmp_path)
    url = files.add("fasterrcnn.pth", W.Served(data))
    opts = _options(tmp_path / "root", [{"name": "person-detector", "kind": "detector", "dest": DETECTOR_DEST,
                                         "sha256_prefix": W.sha256(data)[:8], "urls": [url]}])
    [out] = F.fetch(opts, ["person-detector"])
    assert out.ok and out.action == "downloaded", out.detail
    dest = tmp_path / "root" / DETECTOR_DEST
    state = torch.load(dest, map_location="cpu", weights_only=True)  # an independent reader of the result
    assert state["roi_heads.box_predictor.cls_score.weight"].shape == (91, 32)
    lock = json.loads((tmp_path / "root" / F.LOCK_NAME).read_text())
    assert lock["files"]["person-detector"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert detector_weights(None, tmp_path / "root") == dest  # `infer --detector builtin` finds it
    [again] = F.fetch(opts, ["person-detector"])
    assert again.ok and again.action == "verified"


@pytest.mark.parametrize("change, message", [
    ("prefix", r"sha256 [0-9a-f]{64} does not start with 00000000, the hash prefix in the published file's name"),
    ("classes", r"roi_heads.box_predictor.cls_score.weight has shape \(80, 32\), expected \(91, features\)"),
    ("network", r"key 'module.backbone.conv1.weight' is not part of a detector"),
])
def test_a_wrong_detector_file_is_refused_in_one_line_and_not_kept(tmp_path, files, tiny_ckpt, change, message):
    data = {"prefix": W.detector_state_dict_bytes(tmp_path), "network": tiny_ckpt,
            "classes": W.detector_state_dict_bytes(tmp_path, classes=80)}[change]
    prefix = "00000000" if change == "prefix" else W.sha256(data)[:8]
    opts = _options(tmp_path / "root", [{"name": "person-detector", "kind": "detector", "dest": DETECTOR_DEST,
                                         "sha256_prefix": prefix, "urls": [files.add("d.pth", W.Served(data))]}])
    [out] = F.fetch(opts, ["person-detector"])
    assert not out.ok and re.search(message, out.detail) and "\n" not in out.detail, out.detail
    assert "not the person-detector file the registry describes" in out.detail
    assert _leftovers(tmp_path / "root") == [] and not (tmp_path / "root" / F.LOCK_NAME).exists()


def test_shipped_detector_entry_names_torchvision_file_and_its_prefix():
    art = load_registry().get("person-detector")
    assert art.kind == "detector" and art.sha256_prefix == "fb6a3cc7" and art.dest == DETECTOR_DEST
    assert [u.url for u in art.urls] == ["https://download.pytorch.org/models/"
                                         "fasterrcnn_mobilenet_v3_large_fpn-fb6a3cc7.pth"]
    with pytest.raises(RegistryError, match="sha256_prefix must be 8 to 64 hex digits"):
        parse_registry(W.registry_toml([{"name": "x", "kind": "detector", "dest": "x.pth", "sha256_prefix": "xyz",
                                         "urls": ["https://e.org/x"]}]))


# ---------------------------------------------------------------------- registry


def test_shipped_registry_is_complete_and_its_models_are_the_paper_layout():
    reg = load_registry()
    assert set(reg.names()) >= {"pose-resnet152", "contextpose-backbone", "volumetric-softmax", "algebraic",
                                "algebraic-results-train", "algebraic-results-val", "limb-lengths",
                                "contextpose-h36m", "contextpose-3dhp"}
    for art in reg.artifacts:
        assert art.urls and all(u.url.startswith("https://") and u.source for u in art.urls), art.name
    assert reg.get("algebraic-results-train").rows == 159181 and reg.get("algebraic-results-val").rows == 2181
    assert reg.get("algebraic-results-val").rows == len(original_test_table())
    paper = json.loads((W.REPO / "tests" / "data" / "original_state_dict_keys_paper.json").read_text())["keys"]
    for name in ("contextpose-h36m", "contextpose-3dhp"):
        got = {k: list(v.shape) for k, v in meta_model(reg.get(name).model).state_dict().items()}
        assert got == paper, name
    # learnable-triangulation's released models: the networks ctxpose builds have the original's keys and shapes
    volumetric = json.loads((W.REPO / "tests" / "data" / "original_state_dict_keys_volumetric.json").read_text())
    got = {k: list(v.shape) for k, v in meta_model(reg.get("volumetric-softmax").model).state_dict().items()}
    assert got == volumetric["keys"]
    algebraic = {k: list(v.shape) for k, v in meta_model(reg.get("algebraic").model).state_dict().items()}
    backbone = {k: v for k, v in volumetric["keys"].items() if k.startswith("backbone.")}
    heads = {k: v for k, v in algebraic.items() if k.startswith("backbone.alg_confidences.")}
    assert algebraic == {**backbone, **heads} and heads["backbone.alg_confidences.head.4.weight"] == [17, 256]
    assert reg.get("algebraic").dest.endswith("human36m_alg_10-04-2019/checkpoints/0060/weights.pth")
    cfg = load_config(W.REPO / "configs" / "human36m_contextpose.yaml")
    backbone_model = meta_model(reg.get("contextpose-backbone").model).backbone
    backbone = {k: list(v.shape) for k, v in backbone_model.state_dict().items()}
    prior = meta_prior()
    with torch.device("meta"):
        assert backbone == {k: list(v.shape) for k, v in build_model(cfg, prior).backbone.state_dict().items()}


@pytest.mark.parametrize("bad, message", [
    ('dest = "../escape.pth"', "inside the data root"),
    ('dest = "/abs.pth"', "inside the data root"),
    ('kind = "zip"', "kind 'zip'"),
])
def test_registry_errors_are_one_line(bad, message):
    text = W.registry_toml([{"name": "x", "kind": "limb-prior", "dest": "x.h5", "urls": ["https://e.org/x"]}])
    key = bad.split(" = ")[0]
    text = "\n".join(bad if line.startswith(f"{key} = ") else line for line in text.splitlines())
    with pytest.raises(RegistryError, match=message):
        parse_registry(text)
    with pytest.raises(RegistryError, match="duplicate name"):
        parse_registry(W.registry_toml([{"name": "x", "kind": "limb-prior", "dest": f"{d}.h5",
                                         "urls": ["https://e.org/x"]} for d in "ab"]))


# ---------------------------------------------------------------------- share links (recorded responses)


def _recorded(name, **values):
    text = (W.DATA / name).read_text()
    for k, v in values.items():
        text = text.replace("{" + k + "}", str(v))
    return text


def test_google_drive_confirm_page_and_quota_page(httpserver):
    page = _recorded("gdrive_confirm.html")
    link = "https://drive.google.com/open?id=1TGHBfa9LsFPVS5CH6Qkcy5Jr2QsJdPEa"
    assert gdrive_file_id(link) == "1TGHBfa9LsFPVS5CH6Qkcy5Jr2QsJdPEa"
    assert gdrive_file_id("https://drive.google.com/file/d/1RO7tQdUI2gmlA58Jvw9M21NWIYPQgjPE") == \
        "1RO7tQdUI2gmlA58Jvw9M21NWIYPQgjPE"
    expected = ("https://drive.usercontent.google.com/download?id=1TGHBfa9LsFPVS5CH6Qkcy5Jr2QsJdPEa&export=download"
                "&confirm=t&uuid=6f1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d")
    assert gdrive_confirmed_url(page, link) == expected
    httpserver.expect_request("/uc", query_string={"id": "1TGHBfa9LsFPVS5CH6Qkcy5Jr2QsJdPEa", "export": "download"}) \
        .respond_with_data(page, content_type="text/html; charset=utf-8")
    resolved = resolve(link, SafeSession(), FAST, Endpoints(gdrive_download=httpserver.url_for("/uc")))
    assert resolved.url == expected and resolved.service == "gdrive"
    with pytest.raises(DownloadError, match="Too many users have viewed or downloaded this file"):
        gdrive_confirmed_url(_recorded("gdrive_quota.html"), link)
    with pytest.raises(DownloadError, match="folder"):
        gdrive_file_id("https://drive.google.com/drive/folders/1yjnD47hdcFNvbQj87pXDgqGt52K7rz_z")


def test_onedrive_shares_api(httpserver, files, tmp_path):
    link = "https://1drv.ms/u/s!AtkZATuiDzAai0BTMZzHRR4z6Po8?e=Z1WEKj"
    # the documented encoding: base64, '=' stripped, '/' -> '_', '+' -> '-', prefixed 'u!'
    token = "u!aHR0cHM6Ly8xZHJ2Lm1zL3UvcyFBdGtaQVR1aUR6QWFpMEJUTVp6SFJSNHo2UG84P2U9WjFXRUtq"
    assert onedrive_share_token(link) == token
    assert onedrive_share_token("https://onedrive.live.com/redir?resid=1231244193912!12&authKey=1201919!12921!1") == \
        "u!aHR0cHM6Ly9vbmVkcml2ZS5saXZlLmNvbS9yZWRpcj9yZXNpZD0xMjMxMjQ0MTkzOTEyITEyJmF1dGhLZXk9MTIwMTkxOSExMjkyMSEx"
    data = W.limb_h5_bytes(tmp_path)
    server = httpserver.url_for("").rstrip("/")
    item = _recorded("onedrive_shares_root.json", server=server + "/files", size=len(data),
                     sha1=hashlib.sha1(data).hexdigest().upper(), sha256=W.sha256(data).upper())
    item = item.replace("/onedrive-content/", "/")
    files.add("mean_and_std_limb_length.h5", W.Served(data))
    httpserver.expect_request(f"/v1.0/shares/{token}/root").respond_with_data(item, content_type="application/json")
    endpoints = Endpoints(onedrive_api=httpserver.url_for("/v1.0"))
    resolved = resolve(link, SafeSession(), FAST, endpoints)
    assert resolved.name == "mean_and_std_limb_length.h5" and resolved.size == len(data)
    assert resolved.hashes == {"sha256": W.sha256(data), "sha1": hashlib.sha1(data).hexdigest()}
    opts = _options(tmp_path / "root", [{"name": "limbs", "kind": "limb-prior", "dest": "extra/limbs.h5",
                                         "urls": [link]}], endpoints=endpoints)
    [out] = F.fetch(opts, ["limbs"])
    assert out.ok, out.detail
    assert (tmp_path / "root" / "extra" / "limbs.h5").read_bytes() == data


def test_yandex_public_api_and_its_reported_digests(httpserver, files, tmp_path):
    link = "https://disk.yandex.ru/d/ZsQ4GV5EX_Wsog"
    data = W.results_pickle_bytes(2181, seed=3)
    files.add("val.pkl", W.Served(data))
    href = _recorded("yandex_public_download.json", server=httpserver.url_for("/files").rstrip("/"))
    href = href.replace("/yandex-content/", "/")
    httpserver.expect_request("/v1/disk/public/resources/download", query_string={"public_key": link}) \
        .respond_with_data(href, content_type="application/json")

    def meta(md5):
        return _recorded("yandex_public_meta.json", size=len(data), md5=md5, sha256=W.sha256(data))

    endpoints = Endpoints(yandex_api=httpserver.url_for("/v1/disk"))
    entries = [{"name": "val", "kind": "results", "split": "val", "rows": 2181, "dest": "val.pkl", "urls": [link]}]
    handler = httpserver.expect_request("/v1/disk/public/resources")
    handler.respond_with_data(meta("0" * 32), content_type="application/json")
    [bad] = F.fetch(_options(tmp_path / "a", entries, endpoints=endpoints), ["val"])
    assert not bad.ok and "md5" in bad.detail and "yandex reports" in bad.detail
    assert _leftovers(tmp_path / "a") == []
    httpserver.clear()
    files = W.FileServer(httpserver)
    files.add("val.pkl", W.Served(data))
    httpserver.expect_request("/v1/disk/public/resources/download").respond_with_data(href,
                                                                                       content_type="application/json")
    httpserver.expect_request("/v1/disk/public/resources").respond_with_data(
        meta(hashlib.md5(data).hexdigest()), content_type="application/json")
    resolved = resolve(link, SafeSession(), FAST, endpoints)
    assert resolved.url.startswith(httpserver.url_for("/files/val.pkl")) and resolved.size == len(data)
    [ok] = F.fetch(_options(tmp_path / "b", entries, endpoints=endpoints), ["val"])
    assert ok.ok, ok.detail


# ---------------------------------------------------------------------- --from, --verify, --list, keyed estimates


def test_from_folder_verify_and_status(tmp_path, tiny_ckpt):
    src = tmp_path / "usb"
    src.mkdir()
    (src / "tiny.pth").write_bytes(tiny_ckpt)  # flat copy
    (src / "limbs.h5").write_bytes(b"not hdf5")
    entries = [{"name": "tiny", "kind": "network", "dest": "pretrained/tiny.pth", "model": W.TINY_MODEL_TOML,
                "urls": ["https://e.org/tiny.pth"]},
               {"name": "limbs", "kind": "limb-prior", "dest": "extra/limbs.h5", "urls": ["https://e.org/l.h5"]},
               {"name": "val", "kind": "results", "split": "val", "dest": "val.pkl", "urls": ["https://e.org/v"]}]
    root = tmp_path / "root"
    opts = _options(root, entries)
    out = {o.name: o for o in F.import_from(opts, src)}
    assert out["tiny"].ok and out["tiny"].action == "imported"
    assert not out["limbs"].ok and "extra/limbs.h5: not the limbs file" in out["limbs"].detail
    assert out["val"].ok and out["val"].action == "missing"
    assert (root / "pretrained" / "tiny.pth").read_bytes() == tiny_ckpt and not (root / "extra" / "limbs.h5").exists()
    states = {s.artifact.name: s.state for s in F.status(opts)}
    assert states == {"tiny": "verified", "limbs": "missing", "val": "missing"}
    # a file placed by hand is pinned by --verify once its content checks out; a changed file is a mismatch
    (root / "extra" / "limbs.h5").write_bytes(W.limb_h5_bytes(tmp_path))
    assert F.status(opts)[1].state == "unpinned"
    res = {o.name: o for o in F.verify_present(opts)}
    assert res["limbs"].action == "pinned" and res["tiny"].action == "verified" and all(o.ok for o in res.values())
    with open(root / "pretrained" / "tiny.pth", "r+b") as f:
        f.seek(100)
        f.write(b"\x00" * 8)
    bad = {o.name: o for o in F.verify_present(opts)}["tiny"]
    assert not bad.ok and bad.action == "mismatch" and "differs from the expected" in bad.detail
    (root / "val.pkl.part").write_bytes(b"12345")
    assert {s.artifact.name: s.state for s in F.status(opts)}["val"] == "partial"


def test_keyed_estimates_serve_other_selections_and_count_what_is_missing(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    data = W.results_pickle_bytes(2181, seed=4)
    (root / "val.pkl").write_bytes(data)
    entries = [{"name": "val", "kind": "results", "split": "val", "rows": 2181, "dest": "val.pkl",
                "urls": ["https://e.org/v"]}]
    opts = _options(root, entries)
    # labels made with another selection: every 32nd frame of two test sequences, 2 cameras
    seqs = [("S9", "Walking", 1, 3112), ("S11", "Directions", 2, 1388)]  # (subject, action, trial, any length)
    rows = [(s, a, t, c, f) for s, a, t, n in seqs for f in range(0, n, 32) for c in ("54138969", "55011271")]
    labels = _labels(tmp_path / "labels.npz", rows)
    [conv] = F.keyed_predictions(opts, labels)
    assert conv.ok and conv.action == "converted"
    table = original_test_table()
    original = {(s, a, int(t), int(f)): i for i, (s, a, t, f) in
                enumerate(zip(table.subject, table.action, table.trial, table.frame, strict=True))}
    # S11 Directions-2 has no 54138969 view in the original (broken video): those rows have no estimate
    covered = [r for r in rows if (r[0], r[1], r[2], r[4]) in original
               and not (r[0] == "S11" and r[3] == "54138969")]
    cov = keyed_coverage(root / "val_predictions.npz", labels, ["S9", "S11"])
    assert (cov.rows, cov.rows_covered) == (len(rows), len(covered))
    assert f"{len(covered):,} of {len(rows):,} rows have an estimate" in conv.detail
    kp, idx = W.results(2181, seed=4)
    by_row = kp[np.argsort(idx)]
    with np.load(root / "val_predictions.npz", allow_pickle=False) as z:
        names = {k: z[k].tolist() for k in ("subject_names", "action_names", "camera_names")}
        for i in np.random.default_rng(0).choice(len(z["frame"]), 50):
            key = (names["subject_names"][z["subject_idx"][i]], names["action_names"][z["action_idx"][i]],
                   int(z["trial"][i]), int(z["frame"][i]))
            np.testing.assert_allclose(z["keypoints_3d"][i], by_row[original[key]])
    # as pred_results_path: a dataset whose samples are all covered works; one with missing samples is one line
    covered_ds = _FakeDataset(covered)
    roots = load_root_predictions(root / "val_predictions.npz", covered_ds)
    key = covered[0][0], covered[0][1], covered[0][2], covered[0][4]
    np.testing.assert_allclose(roots[0], by_row[original[key]][6], rtol=1e-6)
    with pytest.raises(DataError, match=rf"{len(rows) - len(covered):,} of {len(rows):,} val samples have no "
                                        r"estimate.*--selection original"):
        load_root_predictions(root / "val_predictions.npz", _FakeDataset(rows))


def _labels(path, rows):
    n = len(rows)
    cams = ["54138969", "55011271", "58860488", "60457274"]
    lab = Labels(subject=np.array([r[0] for r in rows]), action=np.array([r[1] for r in rows]),
                 trial=np.array([r[2] for r in rows]), camera=np.array([r[3] for r in rows]),
                 camera_index=np.array([cams.index(r[3]) for r in rows]), frame=np.array([r[4] for r in rows]),
                 keypoints_3d=np.zeros((n, 17, 3)), bbox=np.zeros((n, 4)), K=np.tile(np.eye(3), (n, 1, 1)),
                 R=np.tile(np.eye(3), (n, 1, 1)), t=np.zeros((n, 3)), dist=np.zeros((n, 5)),
                 image=np.array(["x.jpg"] * n),
                 meta={"format": "ctxpose-labels", "version": 1, "selection": {"rule": "stride", "test_every": 32}})
    lab.save(path)
    return path


class _FakeDataset:
    """The RootDataset protocol over (subject, action, trial, camera, frame) rows."""

    split = "val"
    skeleton = get_skeleton("contextpose17")

    def __init__(self, rows):
        self.subject_names = sorted({r[0] for r in rows})
        self.action_names = sorted({r[1] for r in rows})
        self.camera_names = ["54138969", "55011271", "58860488", "60457274"]
        self.rows = rows

    def __len__(self):
        return len(self.rows)

    def sample_ids(self):
        cols = list(zip(*self.rows, strict=True))
        return {"subject_idx": np.array([self.subject_names.index(s) for s in cols[0]]),
                "action_idx": np.array([self.action_names.index(a) for a in cols[1]]),
                "trial": np.array(cols[2]), "camera_idx": np.array([self.camera_names.index(c) for c in cols[3]]),
                "frame": np.array(cols[4])}

    def split_frame_positions(self):
        raise AssertionError("keyed predictions do not use positions")
