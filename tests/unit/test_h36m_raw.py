"""Raw Human3.6M readers and writers: CDF poses, MATLAB v7.3 masks, videos, boxes, archives, facts."""

from __future__ import annotations

import io
import struct
import tarfile

import cdflib
import cv2
import h5py
import numpy as np
import pytest

from ctxpose.data.h36m import metadata
from ctxpose.data.h36m.archives import check_member, extract_members, parse_archive_name
from ctxpose.data.h36m.raw import (
    iter_video_frames,
    mask_to_bbox,
    read_cdf_poses,
    read_mask_bboxes,
    square_bbox,
)
from ctxpose.data.h36m.synthesize import write_mask_mat, write_pose_cdf
from ctxpose.data.labels import Labels, load_labels
from ctxpose.data.transforms import scale_bbox
from ctxpose.errors import DataError


def test_pose_cdf_has_the_real_format(tmp_path):
    rng = np.random.default_rng(0)
    poses = rng.uniform(-2000, 2000, size=(7, 32, 3)).astype(np.float32)
    path = tmp_path / "Directions 1.cdf"
    write_pose_cdf(path, poses.reshape(7, 96))
    cdf = cdflib.CDF(str(path))
    info = cdf.cdf_info()
    assert (info.Version, info.Encoding, info.Majority, info.zVariables) == ("3.3.0", 6, "Column_major", ["Pose"])
    var = cdf.varinq("Pose")
    assert (var.Data_Type, var.Dim_Sizes, var.Last_Rec) == (44, [7, 96], 0)
    raw = cdf.varget("Pose")
    assert raw.shape == (1, 7, 96)
    for f in range(7):  # row = frame; values x0, y0, z0, x1, ...
        for j in range(32):
            for c in range(3):
                assert raw[0, f, 3 * j + c] == poses[f, j, c]
    np.testing.assert_array_equal(read_cdf_poses(path), poses.astype(np.float64))
    np.testing.assert_array_equal(read_cdf_poses(_d2(tmp_path, poses[..., :2]), values_per_joint=2), poses[..., :2])


def _d2(tmp_path, pixels):
    path = tmp_path / "Directions 1.54138969.cdf"
    write_pose_cdf(path, pixels.reshape(len(pixels), 64))
    return path


@pytest.mark.parametrize("cut", [1, 100, 600, 2000])
def test_truncated_cdf_fails_naming_the_file(tmp_path, cut):
    path = tmp_path / "Walking 1.cdf"
    write_pose_cdf(path, np.ones((20, 96), dtype=np.float32))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - cut])
    with pytest.raises(DataError, match=r"Walking 1\.cdf.*truncated"):
        read_cdf_poses(path)


def _index_before_data(data: bytes) -> bytes:
    """Move the CDF's index record (VXR) in front of its data record (VVR), patching the offsets.

    cdflib writes the index last; other writers (MATLAB) may write it first, and then a file cut inside the
    data record still parses. Record layout (CDF 3 internal format): size (8 bytes), type (4); VDR has
    VXRhead/VXRtail at +28/+36; VXR has Nentries at +20 and 8-byte offsets after 2 x N 4-byte fields.
    """
    out, recs, off = bytearray(data), [], 8
    while off < len(data):
        size, kind = struct.unpack(">qi", data[off:off + 12])
        recs.append((off, size, kind))
        off += size
    (vdr,) = [r for r in recs if r[2] == 8]
    (vvr,) = [r for r in recs if r[2] == 7]
    (vxr,) = [r for r in recs if r[2] == 6]
    assert vxr[0] == vvr[0] + vvr[1] == len(data) - vxr[1]
    index = bytearray(data[vxr[0]:])
    n = struct.unpack(">i", index[20:24])[0]
    for k in range(n):
        at = 28 + 8 * n + 8 * k
        if struct.unpack(">q", index[at:at + 8])[0] == vvr[0]:
            index[at:at + 8] = struct.pack(">q", vvr[0] + vxr[1])
    out = out[:vvr[0]] + index + data[vvr[0]:vvr[0] + vvr[1]]
    for at in (vdr[0] + 28, vdr[0] + 36):
        out[at:at + 8] = struct.pack(">q", vvr[0])
    return bytes(out)


def test_truncation_that_cdflib_reads_as_zeros_is_caught(tmp_path):
    path = tmp_path / "Walking 1.cdf"
    write_pose_cdf(path, np.ones((40, 96), dtype=np.float32))
    reordered = _index_before_data(path.read_bytes())
    path.write_bytes(reordered)
    np.testing.assert_array_equal(read_cdf_poses(path), np.ones((40, 32, 3)))  # still a valid file
    path.write_bytes(reordered[:-3000])
    silently = cdflib.CDF(str(path)).varget("Pose")  # the pitfall: right shape, zero-filled tail
    assert silently.shape == (1, 40, 96) and (silently == 0).sum() > 0
    with pytest.raises(DataError, match=r"Walking 1\.cdf: truncated CDF"):
        read_cdf_poses(path)


def test_not_a_cdf(tmp_path):
    path = tmp_path / "a.cdf"
    path.write_bytes(b"hello world, not a cdf")
    with pytest.raises(DataError, match="not a CDF"):
        read_cdf_poses(path)
    with pytest.raises(DataError, match="does not exist"):
        read_cdf_poses(tmp_path / "missing.cdf")


def test_mask_mat_has_matlab_v73_structure_and_boxes_round_trip(tmp_path):
    boxes = np.array([[10, 20, 50, 90], [0, 0, 64, 48], [30, 5, 31, 6]])
    path = tmp_path / "Walking 1.54138969.mat"
    write_mask_mat(path, boxes, (48, 64))
    assert path.read_bytes()[:19] == b"MATLAB 7.3 MAT-file"
    with h5py.File(path, "r") as f:
        assert f.userblock_size == 512
        masks = f["Masks"]
        assert masks.shape == (3, 1) and masks.attrs["MATLAB_class"] == b"cell"
        for i, (left, top, right, bottom) in enumerate(boxes):
            mask = f[masks[i, 0]]
            assert mask.shape == (64, 48) and mask.attrs["MATLAB_class"] == b"logical"  # (W, H): column-major
            image = np.asarray(mask).T
            rows = [r for r in range(48) if image[r].any()]
            cols = [c for c in range(64) if image[:, c].any()]
            assert (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1) == (left, top, min(right, 64), min(bottom, 48))
    np.testing.assert_array_equal(read_mask_bboxes(path, np.array([2, 0])), [[30, 5, 31, 6], [10, 20, 50, 48]])


def test_mask_errors(tmp_path):
    path = tmp_path / "m.mat"
    write_mask_mat(path, np.array([[1, 1, 3, 3]]), (8, 8))
    with pytest.raises(DataError, match="has 1 frames, need frame 4"):
        read_mask_bboxes(path, np.array([4]))
    bad = tmp_path / "bad.mat"
    bad.write_bytes(b"nope")
    with pytest.raises(DataError, match="bad.mat"):
        read_mask_bboxes(bad, np.array([0]))


def test_mask_to_bbox_matches_a_loop():
    rng = np.random.default_rng(1)
    for _ in range(20):
        mask_hw = np.zeros((30, 40), dtype=np.uint8)
        t, b = sorted(rng.integers(0, 30, 2))
        left, r = sorted(rng.integers(0, 40, 2))
        mask_hw[t:b + 1, left:r + 1] = 1
        ref = (left, t, r + 1, b + 1)
        assert mask_to_bbox(mask_hw.T) == ref


def _square_reference(left, top, right, bottom):
    """The original generate-labels-npy-multiview.py rule, on (top, left, bottom, right)."""
    width, height = right - left, bottom - top
    if height < width:
        centre = (top + bottom) * 0.5
        top = int(round(centre - width * 0.5))
        bottom = top + width
    else:
        centre = (left + right) * 0.5
        left = int(round(centre - height * 0.5))
        right = left + height
    return left, top, right, bottom


def test_square_bbox_matches_the_original_rule():
    rng = np.random.default_rng(2)
    for _ in range(200):
        left, top = (int(v) for v in rng.integers(-50, 500, 2))
        box = (left, top, left + int(rng.integers(1, 400)), top + int(rng.integers(1, 400)))
        got = square_bbox(box)
        assert got == _square_reference(*box)
        assert got[2] - got[0] == got[3] - got[1] == max(box[2] - box[0], box[3] - box[1])
    assert tuple(scale_bbox((0, 0, 100, 100), 1.0)) == (0, 0, 100, 100)
    assert tuple(scale_bbox((0, 0, 100, 100), 1.5)) == (-25, -25, 125, 125)


def test_video_reader_yields_selected_frames(tmp_path):
    path = tmp_path / "v.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 50.0, (64, 48))
    for i in range(10):
        writer.write(np.full((48, 64, 3), 20 * i + 10, dtype=np.uint8))
    writer.release()
    got = list(iter_video_frames(path, np.array([1, 4, 7])))
    assert [i for i, _ in got] == [1, 4, 7]
    for i, image in got:
        assert image.shape == (48, 64, 3)
        assert abs(float(image.mean()) - (20 * i + 10)) < 4
    with pytest.raises(DataError, match="ends or is corrupt at frame 10"):
        list(iter_video_frames(path, np.array([2, 12])))
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(DataError, match="bad.mp4"):
        list(iter_video_frames(bad, np.array([0])))


def _tar_with(tmp_path, name, member: tarfile.TarInfo, data: bytes = b"x"):
    path = tmp_path / name
    with tarfile.open(path, "w:gz") as tar:
        member.size = len(data) if member.isreg() else 0
        tar.addfile(member, io.BytesIO(data) if member.isreg() else None)
    return path


@pytest.mark.parametrize("member, why", [
    (tarfile.TarInfo("/etc/Walking 1.54138969.mp4"), "absolute"),
    (tarfile.TarInfo("S1/../../Walking 1.54138969.mp4"), "traversal"),
])
def test_archive_rejects_unsafe_paths(tmp_path, member, why):
    archive = _tar_with(tmp_path, "Videos_S1.tgz", member)
    with pytest.raises(DataError, match=why):
        extract_members(archive, tmp_path / "dest", {"Walking 1.54138969.mp4"})
    assert not (tmp_path / "dest").exists() or not any((tmp_path / "dest").rglob("*.mp4"))


def test_archive_rejects_links(tmp_path):
    link = tarfile.TarInfo("S1/Videos/Walking 1.54138969.mp4")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    archive = _tar_with(tmp_path, "Videos_S1.tgz", link)
    with pytest.raises(DataError, match="link"):
        extract_members(archive, tmp_path / "dest", {"Walking 1.54138969.mp4"})
    with pytest.raises(DataError, match="link"):
        check_member(archive, link)


def test_archive_extracts_into_the_raw_layout(tmp_path):
    member = tarfile.TarInfo("extra_top/S1/MyPoseFeatures/D3_Positions/Walking 1.cdf")
    archive = _tar_with(tmp_path, "Poses_D3_Positions_S1.tgz", member, b"payload")
    written = extract_members(archive, tmp_path / "dest", {"Walking 1.cdf"})
    assert written == ["S1/MyPoseFeatures/D3_Positions/Walking 1.cdf"]
    assert (tmp_path / "dest" / written[0]).read_bytes() == b"payload"
    assert extract_members(archive, tmp_path / "dest", {"Walking 1.cdf"}) == []  # already there
    assert parse_archive_name("Segments_mat_gt_bb_S11.tgz") == ("ground_truth_bb", "S11")
    assert parse_archive_name("random.tgz") is None


def test_metadata_quirks_and_counts():
    assert metadata.sequence("S1", "TakingPhoto-1").base_name == "TakingPhoto 1"
    assert metadata.sequence("S5", "TakingPhoto-1").base_name == "Photo"
    assert metadata.sequence("S1", "Eating-1").base_name == "Eating 2"
    assert metadata.sequence("S1", "WalkingTogether-2").base_name == "WalkTogether"
    assert metadata.sequence("S9", "Greeting-2").num_frames == 1447  # mocap shorter than the video
    assert metadata.sequence("S1", "Directions-1").num_frames == 1383
    assert all(len(metadata.sequences([s])) == 30 for s in metadata.subjects())
    assert metadata.is_missing_video("S11", "Directions-2", "54138969")
    assert not metadata.is_missing_video("S11", "Directions-2", "55011271")
    assert metadata.raw_relpath("Videos", "S6", "Photo 1", "54138969") == "S6/Videos/Photo 1.54138969.mp4"
    assert [s.name for s in metadata.sequences(["S7"], ["Walking"])] == ["Walking-1", "Walking-2"]
    with pytest.raises(DataError, match="unknown subject 'S2'"):
        metadata.sequences(["S2"])


def test_labels_round_trip_and_validation(tmp_path):
    n, j = 3, 17
    labels = Labels(
        subject=np.array(["S1"] * n), action=np.array(["Walking"] * n), trial=np.ones(n), camera=np.array(["1"] * n),
        camera_index=np.zeros(n), frame=np.arange(n), keypoints_3d=np.random.default_rng(0).normal(size=(n, j, 3)),
        bbox=np.zeros((n, 4)), K=np.tile(np.eye(3), (n, 1, 1)), R=np.tile(np.eye(3), (n, 1, 1)), t=np.zeros((n, 3)),
        dist=np.zeros((n, 5)), image=np.array(["a.jpg"] * n), meta={"format": "ctxpose-labels", "version": 1})
    labels.save(tmp_path / "labels.npz")
    with np.load(tmp_path / "labels.npz", allow_pickle=False) as z:  # independent read
        assert z["trial"].dtype == np.int8 and z["frame"].dtype == np.int32 and z["keypoints_3d"].shape == (n, j, 3)
    back = load_labels(tmp_path / "labels.npz")
    np.testing.assert_array_equal(back.keypoints_3d, labels.keypoints_3d)
    labels.meta["version"] = 99
    with pytest.raises(DataError, match="version 99"):
        labels.save(tmp_path / "bad.npz")
    assert not (tmp_path / "bad.npz").exists()
