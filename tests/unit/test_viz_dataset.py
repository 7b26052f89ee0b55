"""``visualize dataset``: crops carry the ground truth where the labels' camera puts it; selection and
layout errors are one line; another processed layout plugs in through ``LAYOUTS``."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from ctxpose.errors import DataError
from ctxpose.viz import dataset as vd
from ctxpose.viz.output import ImageSink
from ctxpose.viz.style import Style
from tests.unit.viz_fixtures import CROP, POSE, K, facing_camera, joint_rgb, pixel, reference_project, write_processed

SIZE = 384


@pytest.fixture(scope="module")
def processed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    poses = [POSE + [0.0, 0.0, 30.0 * f] for f in range(4)]  # frames 0, 5, 10, 15; rising 30 mm a frame
    return write_processed(tmp_path_factory.mktemp("processed"), poses)


def test_each_crop_shows_the_ground_truth_through_its_own_camera(processed: Path, tmp_path: Path) -> None:
    with ImageSink(tmp_path) as sink:
        report = vd.visualize_dataset(processed, sink, "S9", "Walking-1", None, "5:16:5", style=Style(size=SIZE))
    assert len(report.rows) == 3  # frames 5, 10, 15 of the first camera
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["S9_Walking-1_54138969_000005.png", "S9_Walking-1_54138969_000010.png",
                     "S9_Walking-1_54138969_000015.png", "contact_sheet.png"]
    R, t = facing_camera("front")
    for f in (1, 2, 3):
        image = cv2.imread(str(tmp_path / f"S9_Walking-1_54138969_{5 * f:06d}.png"))[:, :, ::-1]
        header = image.shape[0] - SIZE  # the title strip sits above the 384-pixel crop
        assert image.shape[1] == SIZE and 20 < header < 120
        uv = (reference_project(POSE + [0.0, 0.0, 30.0 * f], K, R, t) + 0.5) * SIZE / CROP - 0.5 + [0, header]
        for j, p in enumerate(uv):
            assert pixel(image, p) == joint_rgb(j, "gt")


def test_the_back_camera_sees_the_figure_mirrored(processed: Path, tmp_path: Path) -> None:
    layout, table = vd.open_processed(processed)
    assert layout.name == "ctxpose-h36m" and len(table) == 8
    rows = vd.select_rows(table, camera="55011271", frames=vd.parse_frames("0"))
    image = vd.render_row(table, int(rows[0]), Style(size=SIZE))
    header = image.shape[0] - SIZE
    uv = (reference_project(POSE, K, *facing_camera("back")) + 0.5) * SIZE / CROP - 0.5 + [0, header]
    for j, p in enumerate(uv):
        assert pixel(image, p) == joint_rgb(j, "gt")


def test_selection_errors_name_what_exists(processed: Path) -> None:
    _, table = vd.open_processed(processed)
    with pytest.raises(DataError, match="--subject S1: not in .* found S9"):
        vd.select_rows(table, subject="S1")
    with pytest.raises(DataError, match="--camera 1: .*found 54138969, 55011271"):
        vd.select_rows(table, camera="1")
    assert len(vd.select_rows(table, action="Walking")) == 4  # an action means all its trials
    with pytest.raises(DataError, match="--frames 100:200:None: .* frames 0..15"):
        vd.select_rows(table, frames=vd.parse_frames("100:200"))
    for bad in ("a:b", "1:2:3:4", "0:10:0"):
        with pytest.raises(DataError, match="--frames"):
            vd.parse_frames(bad)
    with pytest.raises(DataError, match="processed dataset folder not found"):
        vd.open_processed(processed / "nope")
    with pytest.raises(DataError, match="not a processed dataset"):
        vd.open_processed(processed / "images")
    with pytest.raises(DataError, match="--raw .*: folder not found"), ImageSink(processed.parent / "o") as sink:
        vd.visualize_dataset(processed, sink, raw=processed / "no_raw")


def test_another_layout_is_one_small_reader(processed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What MPI-INF-3DHP support needs: a detect and a read function returning a SampleTable."""
    from ctxpose.geometry import projection_matrix

    root = tmp_path / "other"
    (root / "imgs").mkdir(parents=True)
    cv2.imwrite(str(root / "imgs" / "a.png"), np.full((CROP, CROP, 3), 90, np.uint8))
    (root / "annot.txt").write_text("x")
    R, t = facing_camera()

    def read(r: Path) -> vd.SampleTable:
        _, base = vd.open_processed(processed)
        return vd.SampleTable(r, "toy", base.skeleton, np.array(["TS1"]), np.array(["seq-1"]), np.array(["cam0"]),
                              np.array([7]), np.array(["imgs/a.png"]), projection_matrix(K, R, t)[None], POSE[None])

    monkeypatch.setattr(vd, "LAYOUTS", [*vd.LAYOUTS, vd.Layout("toy", lambda r: (r / "annot.txt").is_file(), read)])
    with ImageSink(tmp_path / "out") as sink:
        report = vd.visualize_dataset(root, sink, style=Style(size=SIZE))
    image = cv2.imread(str(tmp_path / "out" / "TS1_seq-1_cam0_000007.png"))[:, :, ::-1]
    header = image.shape[0] - SIZE
    uv = (reference_project(POSE, K, R, t) + 0.5) * SIZE / CROP - 0.5 + [0, header]
    assert list(report.rows) == [0] and pixel(image, uv[0]) == joint_rgb(0, "gt")
    with pytest.raises(DataError, match="toy layout has no raw-frame reader"), ImageSink(tmp_path / "o2") as sink:
        vd.visualize_dataset(root, sink, raw=tmp_path)


def test_raw_view_projects_with_lens_distortion_and_draws_the_box(tmp_path: Path) -> None:
    """Synthetic raw Human3.6M -> preprocess -> the raw panel: joints where cv2.projectPoints puts them."""
    from ctxpose.data.h36m.cameras import image_size, load_h36m_cameras
    from ctxpose.data.h36m.preprocess import PreprocessOptions, preprocess_h36m
    from ctxpose.data.h36m.synthesize import synthesize_h36m
    from ctxpose.data.labels import load_labels
    from ctxpose.geometry import opencv_coefficients
    from ctxpose.viz.style import BOX

    synthesize_h36m(tmp_path / "raw", subjects=("S9",), actions=("Walking-1",), n_frames=3, size=160)
    assert preprocess_h36m(tmp_path / "raw", tmp_path / "p", PreprocessOptions(image_size=32, train_every=1,
                                                                                test_every=1)).ok
    with ImageSink(tmp_path / "out") as sink:
        vd.visualize_dataset(tmp_path / "p", sink, "S9", "Walking-1", "54138969", "2", raw=tmp_path / "raw",
                             style=Style(size=SIZE))
    image = cv2.imread(str(tmp_path / "out" / "S9_Walking-1_54138969_000002.png"))[:, :, ::-1]
    lab = load_labels(tmp_path / "p" / "labels.npz")
    row = int(np.nonzero((lab.camera == "54138969") & (lab.frame == 2))[0][0])
    cam = load_h36m_cameras()[("S9", "54138969")]
    video = cv2.VideoCapture(str(tmp_path / "raw" / "S9" / "Videos" / "Walking 1.54138969.mp4"))
    hw = (int(video.get(cv2.CAP_PROP_FRAME_HEIGHT)), int(video.get(cv2.CAP_PROP_FRAME_WIDTH)))
    video.release()
    K_full = cam.resized(image_size("S9", "54138969"), hw).K
    uv, _ = cv2.projectPoints(lab.keypoints_3d[row], cv2.Rodrigues(lab.R[row])[0], lab.t[row], K_full,
                              opencv_coefficients(cam.dist, cam.dist_model))
    scale = SIZE / hw[0]
    header = image.shape[0] - SIZE - 2 * 4  # the raw frame and the crop sit in a grid with 4-pixel gaps
    offset = np.array([4, header + 4])
    hits = [pixel(image, (p + 0.5) * scale - 0.5 + offset) == joint_rgb(j, "gt") for j, p in enumerate(uv[:, 0])]
    assert sum(hits) >= 16, hits  # a joint may hide another's centre in this small frame
    left, top, right, bottom = lab.bbox[row]
    mid = (np.array([left, (top + bottom) / 2]) + 0.5) * scale - 0.5 + offset
    assert pixel(image, mid) == BOX or pixel(image, mid + [1, 0]) == BOX
