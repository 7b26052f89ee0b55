"""Where pictures go: PNG files, and for sequences an MP4 (OpenCV), a GIF (Pillow) and TensorBoard images.

:class:`ImageSink` writes every PNG atomically as it comes, so an interrupted render keeps the finished
images; the video and the GIF are assembled under a temporary name and renamed when the sink closes
without an error (an interrupted render leaves none).
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

import cv2
import numpy as np

from ctxpose.errors import OutputError
from ctxpose.utils.io import atomic_path, atomic_write_bytes


def encode_png(image: np.ndarray) -> bytes:
    """(H, W, 3) uint8 RGB -> PNG bytes."""
    ok, data = cv2.imencode(".png", np.ascontiguousarray(image[:, :, ::-1]), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if not ok:
        raise OutputError(f"cannot PNG-encode an image of shape {image.shape}")
    return data.tobytes()


def save_png(path: str | Path, image: np.ndarray) -> Path:
    """Write (H, W, 3) uint8 RGB as a PNG, atomically.

    Raises:
        OutputError: the file or its folder cannot be written.
    """
    path = Path(path)
    try:
        atomic_write_bytes(path, encode_png(image))
    except OSError as e:
        raise OutputError(f"{path}: cannot write ({e.strerror or e})") from None
    return path


def fit_frame(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Scale ``image`` to fit (height, width) keeping its aspect ratio, padded with white (video frames)."""
    h, w = image.shape[:2]
    if (h, w) == (height, width):
        return image
    s = min(height / h, width / w)
    nh, nw = max(1, round(h * s)), max(1, round(w * s))
    small = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    out = np.full((height, width, 3), 255, np.uint8)
    y, x = (height - nh) // 2, (width - nw) // 2
    out[y:y + nh, x:x + nw] = small
    return out


class ImageSink:
    """Writes a mode's images.

    Args:
        out_dir: folder of the PNG files (created with the first image, so a failing input creates nothing).
        video: optional ``.mp4`` path: the sequence frames as an MP4 (``mp4v``), sized as the first frame.
        gif: optional ``.gif`` path: the sequence frames as a looping GIF.
        tensorboard: optional run folder: every image is logged with ``SummaryWriter.add_image`` under
            ``{tag}/{name}`` (sequence frames under ``{tag}/sequence``, one step per frame).
        fps: frames per second of the video and the GIF.
        tag: TensorBoard tag prefix.

    Use as a context manager; :attr:`written` lists the files.
    """

    def __init__(self, out_dir: str | Path, video: str | Path | None = None, gif: str | Path | None = None,
                 tensorboard: str | Path | None = None, fps: float = 10.0, tag: str = "viz") -> None:
        if fps <= 0:
            raise OutputError(f"--fps {fps}: expected a positive number of frames per second")
        for option, path, suffix in (("--video", video, ".mp4"), ("--gif", gif, ".gif")):
            if path is not None and Path(path).suffix.lower() != suffix:
                raise OutputError(f"{option} {path}: expected a {suffix} file name")
        self.out_dir = Path(out_dir)
        self.video, self.gif = (Path(video) if video else None), (Path(gif) if gif else None)
        self.fps, self.tag = float(fps), tag
        self.written: list[Path] = []
        self._frames: list[Path] = []
        self._writer = None
        self._video_ctx = None
        self._video_size: tuple[int, int] | None = None
        self._tb = None
        self._tb_dir = Path(tensorboard) if tensorboard else None
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise OutputError(f"{self.out_dir}: cannot create the output folder (a file has this name)")

    # ------------------------------------------------------------------ adding images

    def add(self, name: str, image: np.ndarray, sequence: bool = False) -> Path:
        """Write ``out_dir/name.png``; a ``sequence`` frame also goes to the video, GIF and TensorBoard slider.

        Args:
            name: file stem (may contain ``/`` for sub-folders).
            image: (H, W, 3) uint8 RGB.
            sequence: part of the frame sequence.
        """
        path = save_png(self.out_dir / f"{name}.png", image)
        self.written.append(path)
        if sequence:
            self._frames.append(path)
            if self.video is not None:
                self._video_frame(image)
        if self._tb_dir is not None:
            tag, step = (f"{self.tag}/sequence", len(self._frames) - 1) if sequence else (f"{self.tag}/{name}", 0)
            self._tensorboard().add_image(tag, image, step, dataformats="HWC")
        return path

    def _tensorboard(self):
        if self._tb is None:
            from torch.utils.tensorboard import SummaryWriter

            try:
                self._tb = SummaryWriter(log_dir=str(self._tb_dir))
            except OSError as e:
                raise OutputError(f"--tensorboard {self._tb_dir}: cannot write ({e.strerror or e})") from None
        return self._tb

    def _video_frame(self, image: np.ndarray) -> None:
        if self._writer is None:
            h, w = image.shape[:2]
            self._video_size = (h + h % 2, w + w % 2)  # even sides for every codec
            self._video_ctx = atomic_path(self.video, keep_suffix=True)
            try:
                tmp = self._video_ctx.__enter__()
            except OSError as e:
                raise OutputError(f"--video {self.video}: cannot write ({e.strerror or e})") from None
            self._writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), self.fps,
                                           (self._video_size[1], self._video_size[0]))
            if not self._writer.isOpened():
                self._abort_video()
                raise OutputError(f"--video {self.video}: OpenCV cannot open an MP4 writer here")
        frame = fit_frame(image, *self._video_size)
        self._writer.write(np.ascontiguousarray(frame[:, :, ::-1]))

    def _abort_video(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        if self._video_ctx is not None:
            ctx, self._video_ctx = self._video_ctx, None
            ctx.__exit__(RuntimeError, RuntimeError("video abandoned"), None)  # removes the temporary file

    # ------------------------------------------------------------------ closing

    def close(self) -> None:
        """Finish the video and the GIF (renamed onto their names) and flush TensorBoard."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None
            ctx, self._video_ctx = self._video_ctx, None
            try:
                ctx.__exit__(None, None, None)
            except OSError as e:
                raise OutputError(f"--video {self.video}: cannot write ({e.strerror or e})") from None
            self.written.append(self.video)
        elif self.video is not None:
            raise OutputError(f"--video {self.video}: this mode made no frame sequence to put in a video")
        if self.gif is not None:
            if not self._frames:
                raise OutputError(f"--gif {self.gif}: this mode made no frame sequence to put in a GIF")
            self._write_gif()
        if self._tb is not None:
            self._tb.close()
            self._tb = None

    def _write_gif(self) -> None:
        from PIL import Image

        first = Image.open(self._frames[0]).convert("RGB")
        size = first.size

        def frames():
            for path in self._frames[1:]:
                with Image.open(path) as im:
                    frame = im.convert("RGB")
                yield frame if frame.size == size else Image.fromarray(fit_frame(np.asarray(frame), size[1], size[0]))

        try:
            with atomic_path(self.gif) as tmp:
                first.save(tmp, format="GIF", save_all=True, append_images=frames(), loop=0,
                           duration=round(1000 / self.fps), optimize=False)
        except OSError as e:
            raise OutputError(f"--gif {self.gif}: cannot write ({e.strerror or e})") from None
        self.written.append(self.gif)

    def __enter__(self) -> ImageSink:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
            return
        self._abort_video()  # interrupted: keep the PNGs, leave no half-written video
        if self._tb is not None:
            self._tb.close()
            self._tb = None
