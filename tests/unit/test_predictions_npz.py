"""The predictions file schema: what the writer puts on disk is read back with zipfile and numpy's .npy reader,
and every broken file is one line naming the file and the field."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from ctxpose.data.predictions_npz import (
    FIELDS,
    INFER_FIELDS,
    INFER_FORMAT,
    MULTIVIEW_FIELDS,
    load_predictions,
    save_predictions,
)
from ctxpose.errors import DataError


def _arrays(n: int = 3, j: int = 17) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"index": np.arange(n), "subject_idx": np.zeros(n, np.int32), "action_idx": np.arange(n) % 2,
            "trial": np.ones(n, np.int64), "camera_idx": np.zeros(n, np.int64), "frame": np.arange(n) * 5,
            "keypoints_3d": rng.normal(size=(n, j, 3)), "keypoints_3d_gt": rng.normal(size=(n, j, 3)),
            "validity": np.ones((n, j)), "proj_matrices": rng.normal(size=(n, 3, 4)),
            "subject_names": np.array(["S9"]), "action_names": np.array(["Walking", "Eating"]),
            "camera_names": np.array(["54138969"]), "skeleton": np.array("contextpose17"),
            "image_shape": np.array([64, 64]), "image_paths": np.array([f"S9/{i}.jpg" for i in range(n)])}


def _read_independently(path: Path) -> dict[str, np.ndarray]:
    out = {}
    with zipfile.ZipFile(path) as z:
        for name in z.namelist():
            with z.open(name) as f:
                out[name.removesuffix(".npy")] = np.lib.format.read_array(f, allow_pickle=False)
    return out


def test_written_file_has_the_declared_dtypes_and_reads_back(tmp_path: Path) -> None:
    a = _arrays()
    path = save_predictions(tmp_path / "predictions.npz", a)
    disk = _read_independently(path)
    assert set(disk) == set(a)
    for key, value in disk.items():
        declared = FIELDS[key].dtype
        assert value.dtype.kind == "U" if declared == "str" else value.dtype == np.dtype(declared), key
        np.testing.assert_array_equal(value, np.asarray(a[key]).astype(value.dtype))
    assert [p.name for p in tmp_path.iterdir()] == ["predictions.npz"]  # no temporary file left
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    loaded = load_predictions(path, ("index", "keypoints_3d"))
    assert set(loaded) == set(a) and loaded["keypoints_3d"].dtype == np.float32


def test_the_writer_refuses_undeclared_or_misshaped_arrays_and_keeps_the_old_file(tmp_path: Path) -> None:
    path = save_predictions(tmp_path / "p.npz", _arrays())
    before = path.read_bytes()
    with pytest.raises(ValueError, match=r"undeclared predictions fields \['person'\]"):
        save_predictions(path, {**_arrays(), "person": np.zeros(3)})
    bad = _arrays()
    bad["validity"] = np.ones((3, 16))
    with pytest.raises(ValueError, match=r"validity has shape \(3, 16\), expected \(3, 17\)"):
        save_predictions(path, bad)
    obj = _arrays()
    obj["action_names"] = np.array([{"a": 1}], dtype=object)
    with pytest.raises((ValueError, TypeError)):
        save_predictions(path, obj)
    assert path.read_bytes() == before


@pytest.mark.parametrize(("change", "message"), [
    (lambda a: a.pop("keypoints_3d"), r"p.npz: no 'keypoints_3d'; expected a predictions file with index, "
                                      r"keypoints_3d"),
    (lambda a: a.update(keypoints_3d=np.zeros((3, 17, 2))), r"p.npz: keypoints_3d has shape \(3, 17, 2\), "
                                                           r"expected \(3, 17, 3\) \(N, J, 3\)"),
    (lambda a: a.update(frame=np.zeros(2, np.int64)), r"p.npz: frame has shape \(2,\), expected \(3,\)"),
    (lambda a: a.update(frame=np.array(["a", "b", "c"])), r"p.npz: frame has dtype <U1, expected int64"),
    (lambda a: a.update(action_idx=np.array([0, 1, 2])), r"p.npz: action_idx outside 0..1 \(the entries of "
                                                         r"action_names\)"),
    (lambda a: a["keypoints_3d"].__setitem__((0, 0, 0), np.nan), r"p.npz: keypoints_3d contains NaN or inf"),
])
def test_the_loader_names_file_and_field(tmp_path: Path, change, message) -> None:
    a = _arrays()
    change(a)
    path = tmp_path / "p.npz"
    np.savez(path, **a)  # written by something else than our writer
    with pytest.raises(DataError, match=message) as e:
        load_predictions(path, ("index", "keypoints_3d"))
    assert "\n" not in str(e.value)


def test_pickled_or_missing_files_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "p.npz"
    np.savez(path, index=np.arange(2), keypoints_3d=np.array([object(), object()], dtype=object))
    with pytest.raises(DataError, match="p.npz: not a readable predictions file"):
        load_predictions(path)
    with pytest.raises(DataError, match="does not exist"):
        load_predictions(tmp_path / "nope.npz")


def test_every_declared_field_is_documented_in_the_schema_module() -> None:
    from ctxpose.data import predictions_npz

    doc = predictions_npz.__doc__ or ""
    assert [k for k in FIELDS if f"    {k} " not in doc and f" {k}," not in doc and f", {k} " not in doc] == []


def _infer_arrays(people: tuple[int, ...] = (1, 0, 2), j: int = 17) -> dict[str, np.ndarray]:
    """An infer table: frames with these numbers of people (an empty frame included)."""
    n, rng = sum(people), np.random.default_rng(1)
    frame = np.repeat(np.arange(len(people)), people)
    return {"source": np.zeros(n, np.int64), "frame": frame, "time": frame / 25.0, "track_id": np.arange(n) % 2,
            "box": rng.uniform(0, 100, (n, 4)), "score": rng.uniform(size=n),
            "keypoints_3d": rng.normal(size=(n, j, 3)), "keypoints_3d_relative": rng.normal(size=(n, j, 3)),
            "keypoints_2d": rng.normal(size=(n, j, 2)), "root": rng.normal(size=(n, 3)),
            "root_method": np.array(["rootnet"] * n), "passes": np.full(n, 3), "K": np.tile(np.eye(3), (n, 1, 1)),
            "dist": np.zeros((n, 5)), "world_to_camera": np.tile(np.eye(3), (n, 1, 1)),
            "frame_source": np.zeros(len(people), np.int64), "frame_index": np.arange(len(people)),
            "frame_time": np.arange(len(people)) / 25.0, "frame_people": np.array(people),
            "meta": np.array('{"sources": ["a.mp4"]}')}


def test_the_infer_kind_is_written_and_read_by_the_same_functions(tmp_path: Path) -> None:
    """infer's per-(frame, person) file: declared dtypes on disk (read by zipfile), a format marker, the same
    loader; each kind's loader refuses the other kind in one line."""
    a = _infer_arrays()
    path = save_predictions(tmp_path / "predictions.npz", a, "infer")
    disk = _read_independently(path)
    assert set(disk) == {*a, "format"} and str(disk["format"]) == INFER_FORMAT
    for key, value in disk.items():
        declared = INFER_FIELDS[key].dtype
        assert value.dtype.kind == "U" if declared == "str" else value.dtype == np.dtype(declared), key
        np.testing.assert_array_equal(value, np.asarray({**a, "format": INFER_FORMAT}[key]).astype(value.dtype))
    loaded = load_predictions(path, ("keypoints_3d", "frame_people"), kind="infer")
    assert loaded["frame_people"].tolist() == [1, 0, 2] and loaded["box"].dtype == np.float32
    with pytest.raises(DataError, match=r"predictions.npz: an infer predictions file \(format ctxpose.infer/1\), "
                                        r"expected an eval predictions file") as e:
        load_predictions(path, ("keypoints_3d",))  # e.g. handed to `visualize predictions`
    assert "\n" not in str(e.value)
    evalfile = save_predictions(tmp_path / "eval.npz", _arrays())
    with pytest.raises(DataError, match="eval.npz: an eval predictions file .*, expected an infer"):
        load_predictions(evalfile, kind="infer")
    with pytest.raises(ValueError, match=r"undeclared predictions fields \['subject_idx'\] \(kind infer\)"):
        save_predictions(path, {**a, "subject_idx": np.zeros(3)}, "infer")


@pytest.mark.parametrize(("change", "message"), [
    (lambda a: a.update(frame_people=np.array([1, 1, 2])), r"frame_people sums to 4, expected 3"),
    (lambda a: a.update(box=np.zeros((3, 5))), r"box has shape \(3, 5\), expected \(3, 4\) \(N, 4\)"),
    (lambda a: a.update(frame_time=np.zeros(2)), r"frame_time has shape \(2,\), expected \(3,\) \(F,\)"),
])
def test_a_broken_infer_file_names_file_and_field(tmp_path: Path, change, message) -> None:
    a = {**_infer_arrays(), "format": np.array(INFER_FORMAT)}
    change(a)
    np.savez(tmp_path / "p.npz", **a)
    with pytest.raises(DataError, match="p.npz: " + message):
        load_predictions(tmp_path / "p.npz", kind="infer")


def test_an_empty_infer_table_round_trips(tmp_path: Path) -> None:
    a = {k: v[:0] if v.ndim and k not in ("frame_source", "frame_index", "frame_time", "frame_people") else v
         for k, v in _infer_arrays().items()}
    a["frame_people"] = np.zeros(3, np.int64)
    loaded = load_predictions(save_predictions(tmp_path / "e.npz", a, "infer"), kind="infer")
    assert loaded["keypoints_3d"].shape == (0, 17, 3) and loaded["frame_people"].tolist() == [0, 0, 0]


def _multiview_arrays(n: int = 2, frames: int = 3, v: int = 3, j: int = 17) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(2)
    boxes = rng.uniform(0, 500, size=(n, v, 4))
    boxes[1, 2] = np.nan  # view 2 had no box in the second row
    return {"frame": np.array([0, 2]), "time": np.array([0.0, 0.08]), "keypoints_3d": rng.normal(size=(n, j, 3)),
            "keypoints_3d_relative": rng.normal(size=(n, j, 3)), "keypoints_2d": rng.normal(size=(n, v, j, 2)),
            "boxes": boxes, "scores": np.where(np.isnan(boxes[..., 0]), np.nan, 0.9),
            "views_used": ~np.isnan(boxes[..., 0]), "root": np.full((n, 3), np.nan), "passes": np.ones(n, np.int64),
            "frame_index": np.arange(frames), "frame_time": np.arange(frames) * 0.04,
            "frame_people": np.array([1, 0, 1]), "camera_K": np.tile(np.eye(3), (v, 1, 1)),
            "camera_dist": np.zeros((v, 5)), "camera_R": np.tile(np.eye(3), (v, 1, 1)),
            "camera_t": rng.normal(size=(v, 3)) * 1000, "meta": np.array('{"sources": ["a", "b", "c"]}')}


def test_the_multiview_kind_is_written_and_read_by_the_same_functions(tmp_path: Path) -> None:
    """`infer --calibration`'s file: declared dtypes and shapes on disk (read by zipfile and numpy's .npy reader,
    no pickles), its own format marker; its loader reads it, the other kinds' loaders refuse it in one line and
    it refuses theirs."""
    a = _multiview_arrays()
    path = save_predictions(tmp_path / "predictions.npz", a, "infer_multiview")
    disk = _read_independently(path)
    assert set(disk) == {*a, "format"} and str(disk["format"]) == "ctxpose.infer-multiview/1"
    expected_dtypes = {"frame": "int32", "time": "float64", "passes": "int32", "views_used": "bool",
                       "frame_index": "int32", "frame_time": "float64", "frame_people": "int32", "camera_K": "float64",
                       "camera_dist": "float64", "camera_R": "float64", "camera_t": "float64"}
    for key, value in disk.items():
        if key in ("format", "meta"):
            assert value.dtype.kind == "U" and value.shape == (), key
            continue
        assert value.dtype == np.dtype(expected_dtypes.get(key, "float32")), key
        assert value.shape == a[key].shape, key
        np.testing.assert_array_equal(value, np.asarray(a[key]).astype(value.dtype))
    assert disk["keypoints_2d"].shape == (2, 3, 17, 2) and disk["views_used"].tolist()[1] == [True, True, False]
    loaded = load_predictions(path, ("keypoints_3d", "camera_K"), kind="infer_multiview")
    assert np.isnan(loaded["boxes"][1, 2]).all() and loaded["frame_people"].tolist() == [1, 0, 1]
    for kind, what in (("eval", "an eval predictions file"), ("infer", "an infer predictions file")):
        with pytest.raises(DataError, match=r"predictions.npz: a multi-view infer predictions file \(format "
                                            rf"ctxpose.infer-multiview/1\), expected {what}") as e:
            load_predictions(path, kind=kind)
        assert "\n" not in str(e.value)
    evalfile = save_predictions(tmp_path / "eval.npz", _arrays())
    inferfile = save_predictions(tmp_path / "infer.npz", _infer_arrays(), "infer")
    for other, what in ((evalfile, "an eval"), (inferfile, "an infer")):
        with pytest.raises(DataError, match=f"{other.name}: {what} predictions file .*, expected a multi-view"):
            load_predictions(other, kind="infer_multiview")
    broken = {**a, "keypoints_2d": a["keypoints_2d"][:, :2]}  # two views' projections for a three-camera rig
    with pytest.raises(ValueError, match=r"keypoints_2d has shape \(2, 2, 17, 2\), expected \(2, 3, 17, 2\)"):
        save_predictions(tmp_path / "broken.npz", broken, "infer_multiview")
    assert not (tmp_path / "broken.npz").exists()
    assert set(MULTIVIEW_FIELDS) == {*a, "format"}
