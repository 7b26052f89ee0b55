"""What ``ctxpose infer`` reads: frames, camera files, detection files, tracks; read back with OpenCV/json."""

import json

import cv2
import numpy as np
import pytest

from ctxpose.data.h36m.raw import square_bbox
from ctxpose.data.infer_inputs import (
    IoUTracker,
    Source,
    find_sources,
    iter_frames,
    parse_box,
    read_camera_file,
    read_detections,
    square_crop_box,
)
from ctxpose.errors import DataError


def write_video(path, n=5, hw=(48, 64)):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (hw[1], hw[0]))
    for i in range(n):
        frame = np.full((*hw, 3), 20 * i, np.uint8)
        writer.write(frame)
    writer.release()
    return path


def test_video_frames_times_and_a_truncated_video(tmp_path):
    video = write_video(tmp_path / "clip.mp4", n=6)
    got = list(iter_frames(Source(video, "video")))
    assert [i for i, _, _ in got] == list(range(6))
    assert [t for _, t, _ in got] == pytest.approx([i / 25.0 for i in range(6)])
    assert abs(float(got[3][2].mean()) - 60) < 6
    cut = tmp_path / "cut.mp4"
    data = video.read_bytes()
    cut.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(DataError, match="cut.mp4"):
        list(iter_frames(Source(cut, "video")))


def test_sources_images_folders_and_refusals(tmp_path):
    for name in ("b.png", "a.png"):
        cv2.imwrite(str(tmp_path / name), np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "notes.txt").write_text("x")
    sources = find_sources([tmp_path])
    assert [p.name for p in sources[0].images] == ["a.png", "b.png"]
    fake = tmp_path / "fake.jpg"
    fake.write_text("not a jpeg")
    with pytest.raises(DataError, match="fake.jpg: not an image"):
        list(iter_frames(find_sources([fake])[0]))
    with pytest.raises(DataError, match="notes.txt: not an image"):
        find_sources([tmp_path / "notes.txt"])
    with pytest.raises(DataError, match="missing.mp4: no such file"):
        find_sources([tmp_path / "missing.mp4"])


def test_opencv_calibration_yaml_and_plain_json(tmp_path):
    K = np.array([[800.0, 0, 320], [0, 810.0, 240], [0, 0, 1]])
    dist = np.array([[-0.2, 0.05, 0.001, -0.002, 0.01]])
    fs = cv2.FileStorage(str(tmp_path / "calib.yaml"), cv2.FILE_STORAGE_WRITE)  # OpenCV's own writer
    fs.write("camera_matrix", K)
    fs.write("distortion_coefficients", dist)
    fs.release()
    k, d = read_camera_file(tmp_path / "calib.yaml")
    np.testing.assert_allclose(k, K)
    np.testing.assert_allclose(d, dist[0])
    (tmp_path / "cam.json").write_text(json.dumps({"fx": 500, "fy": 501, "cx": 100, "cy": 90}))
    k, d = read_camera_file(tmp_path / "cam.json")
    np.testing.assert_allclose(k, [[500, 0, 100], [0, 501, 90], [0, 0, 1]])
    assert not d.any()
    (tmp_path / "bad.json").write_text(json.dumps({"focal": 500}))
    with pytest.raises(DataError, match=r"bad.json: expected keys fx, fy, cx, cy.*found focal"):
        read_camera_file(tmp_path / "bad.json")


def test_coco_results_and_csv_detections(tmp_path):
    coco = [{"image_id": 0, "file_name": "clip.mp4", "bbox": [1, 2, 30, 40], "score": 0.9, "category_id": 1},
            {"image_id": 0, "file_name": "clip.mp4", "bbox": [5, 5, 10, 10], "score": 0.8, "category_id": 3},
            {"image_id": 2, "bbox": [3, 4, 20, 25], "score": 0.4}]
    (tmp_path / "d.json").write_text(json.dumps(coco))
    dets = read_detections(tmp_path / "d.json")
    clip = Source(tmp_path / "clip.mp4", "video")
    assert [d.box.tolist() for d in dets.for_frame(clip, 0, 1)] == [[1, 2, 30, 40]]  # the car is dropped
    assert [d.score for d in dets.for_frame(clip, 2, 1)] == [0.4]
    assert dets.for_frame(clip, 1, 1) == []
    (tmp_path / "d.csv").write_text("frame,x,y,w,h,score,file\n0,1,2,3,4,0.5,clip.mp4\n1,5,6,7,8,0.7,\n")
    dets = read_detections(tmp_path / "d.csv")
    assert [d.box.tolist() for d in dets.for_frame(clip, 0, 1)] == [[1, 2, 3, 4]]
    assert [d.score for d in dets.for_frame(clip, 1, 1)] == [0.7]
    (tmp_path / "bad.csv").write_text("frame,x,y,w,h,score\n0,1,2,-3,4,0.5\n")
    with pytest.raises(DataError, match="bad.csv line 2: bbox"):
        read_detections(tmp_path / "bad.csv")
    with pytest.raises(DataError, match="--box 1,2,3: bbox should be x, y, w, h"):
        parse_box("1,2,3")


def test_square_crop_box_is_preprocessing_square():
    for box in ([10, 20, 30, 50], [0, 0, 41, 7], [5, 5, 12, 12]):
        x, y, w, h = box
        left, top, right, bottom = square_crop_box(np.array(box, float))
        assert right - left == bottom - top == max(w, h)
        ref = square_bbox((x, y, x + w, y + h))  # preprocessing's (integer) square
        assert np.abs(np.array([left, top, right, bottom]) - ref).max() <= 0.5


def test_iou_tracking_keeps_ids_and_starts_new_ones():
    tracker = IoUTracker()
    a, b = np.array([0.0, 0, 10, 20]), np.array([50.0, 0, 10, 20])
    assert tracker.update([a, b], 0) == [0, 1]
    assert tracker.update([b + [2, 0, 0, 0], a + [1, 0, 0, 0]], 1) == [1, 0]  # order of boxes does not matter
    assert tracker.update([], 2) == []  # nobody
    assert tracker.update([np.array([200.0, 0, 10, 20])], 3) == [2]  # far away: a new person
    assert tracker.update([a], 20) == [3]  # the old track expired (max_age 10)


def test_smoothing_matches_a_loop_over_each_track_and_keeps_gaps():
    from ctxpose.data.infer_outputs import smooth_tracks

    rng = np.random.default_rng(0)
    frame = np.array([0, 1, 2, 5, 6, 0, 1, 2])
    track = np.array([0, 0, 0, 0, 0, 1, 1, 1])
    source = np.zeros(8, int)
    kp = rng.normal(size=(8, 2, 3))
    got = smooth_tracks(kp, source, track, frame, sigma=1.0)
    for r in range(8):  # reference: weights over the same track's rows within 3 sigma
        num, den = np.zeros((2, 3)), 0.0
        for q in range(8):
            if track[q] == track[r] and abs(frame[q] - frame[r]) <= 3:
                w = np.exp(-0.5 * (frame[q] - frame[r]) ** 2)
                num, den = num + w * kp[q], den + w
        np.testing.assert_allclose(got[r], num / den, atol=1e-12)
