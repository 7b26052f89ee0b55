"""Image sinks, read back with independent readers: PNG (OpenCV), MP4 (OpenCV), GIF (Pillow), TensorBoard
(tensorboard's EventAccumulator)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from ctxpose.errors import OutputError
from ctxpose.viz.output import ImageSink, save_png

COLOURS = [(220, 30, 30), (30, 200, 40), (20, 40, 230), (240, 220, 20), (200, 30, 200)]  # RGB


def _frame(k: int, h: int = 64, w: int = 80) -> np.ndarray:
    image = np.empty((h, w, 3), np.uint8)
    image[:] = COLOURS[k]
    return image


def test_png_is_rgb_on_disk_as_opencv_reads_it(tmp_path: Path) -> None:
    image = _frame(0)
    image[3, 5] = (1, 2, 3)
    back = cv2.imread(str(save_png(tmp_path / "a" / "x.png", image)), cv2.IMREAD_UNCHANGED)
    assert back.shape == (64, 80, 3)
    np.testing.assert_array_equal(back[:, :, ::-1], image)  # exact, and red is red
    assert not [p for p in (tmp_path / "a").iterdir() if p.name != "x.png"]  # no temp file left


def test_sequence_goes_to_video_gif_and_tensorboard(tmp_path: Path) -> None:
    from PIL import Image
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    video, gif, tb = tmp_path / "v.mp4", tmp_path / "v.gif", tmp_path / "run"
    with ImageSink(tmp_path / "out", video=video, gif=gif, tensorboard=tb, fps=5, tag="viz/test") as sink:
        for k in range(5):
            sink.add(f"f{k}", _frame(k), sequence=True)
        sink.add("plot", _frame(0, 30, 50))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["f0.png", "f1.png", "f2.png", "f3.png",
                                                                      "f4.png", "plot.png"]
    cap = cv2.VideoCapture(str(video))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 5 and cap.get(cv2.CAP_PROP_FPS) == pytest.approx(5)
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    assert len(frames) == 5 and frames[0].shape == (64, 80, 3)
    for k, frame in enumerate(frames):  # lossy codec: the flat colour within a few levels
        np.testing.assert_allclose(frame[20:44, 20:60].mean((0, 1))[::-1], COLOURS[k], atol=12)
    with Image.open(gif) as im:
        assert im.n_frames == 5 and im.size == (80, 64) and im.info["duration"] == 200
        for k in range(5):
            im.seek(k)
            np.testing.assert_allclose(np.asarray(im.convert("RGB"))[32, 40], COLOURS[k], atol=8)
    events = EventAccumulator(str(tb), size_guidance={"images": 0}).Reload()
    seq = events.Images("viz/test/sequence")
    assert [e.step for e in seq] == [0, 1, 2, 3, 4] and (seq[0].width, seq[0].height) == (80, 64)
    decoded = cv2.imdecode(np.frombuffer(seq[3].encoded_image_string, np.uint8), cv2.IMREAD_COLOR)
    np.testing.assert_array_equal(decoded[10, 10][::-1], COLOURS[3])
    assert (events.Images("viz/test/plot")[0].width, events.Images("viz/test/plot")[0].height) == (50, 30)


def test_frames_of_other_sizes_are_fitted_to_the_first(tmp_path: Path) -> None:
    from PIL import Image

    with ImageSink(tmp_path, video=tmp_path / "v.mp4", gif=tmp_path / "v.gif") as sink:
        sink.add("a", _frame(0, 63, 81), sequence=True)  # odd sides: the video rounds up to even
        sink.add("b", _frame(1, 120, 100), sequence=True)
    cap = cv2.VideoCapture(str(tmp_path / "v.mp4"))
    assert (int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))) == (64, 82)
    cap.release()
    with Image.open(tmp_path / "v.gif") as im:
        assert im.n_frames == 2 and im.size == (81, 63)


def test_interrupted_render_keeps_pngs_and_leaves_no_video(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt), ImageSink(tmp_path / "out", video=tmp_path / "v.mp4",
                                                     gif=tmp_path / "v.gif") as sink:
        sink.add("a", _frame(0), sequence=True)
        raise KeyboardInterrupt
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["a.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no video, GIF or temp file


def test_bad_outputs_are_one_line_errors(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="cannot create the output folder"):
        ImageSink(tmp_path / "file")
    with pytest.raises(OutputError, match=r"--video .*\.mp4 file name"):
        ImageSink(tmp_path / "o", video=tmp_path / "v.avi")
    with pytest.raises(OutputError, match="--fps"):
        ImageSink(tmp_path / "o", fps=0)
    with pytest.raises(OutputError, match="no frame sequence"), ImageSink(tmp_path / "o", gif=tmp_path / "g.gif") as s:
        s.add("plot", _frame(0))
    with pytest.raises(OutputError, match="cannot write"):
        save_png(tmp_path / "file" / "x.png", _frame(0))
