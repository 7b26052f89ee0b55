"""Several synchronized, calibrated cameras: ``ctxpose infer --calibration`` (world-frame 3D poses, mm).

Every view's frame i shows the same instant (synchronized; the shortest view sets the length). One person per
frame: in each view, the highest-scoring box at or above the minimum score (or the fixed box). Each view's box
is cut into an undistorted square crop (the single-view path, :meth:`MultiViewEstimator.crop`), its projection
matrix is ``crop_K [R | t]`` of the calibration, and the network runs on the views of the frame that have a box
(at least 2; a frame with fewer is recorded as empty):

* ``algebraic`` / ``ransac``: the 2D keypoints of every view are triangulated (the model's forward);
* ``contextpose`` / ``volumetric``: the cuboid is first centred on the point triangulated from the views' box
  centres (or on the pelvis of ``root_model``, an algebraic model), then on the network's own pelvis, until
  it moves less than ``tolerance_mm`` (at most ``max_passes`` passes).

:func:`estimate_multiview_poses` is the Python entry point (frames and cameras in, world-frame poses out).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ctxpose.data.infer_inputs import square_crop_box
from ctxpose.data.transforms import normalize_to_tensor, undistorted_crop
from ctxpose.errors import ConfigError, DataError, Stopped
from ctxpose.geometry.cameras import Camera
from ctxpose.geometry.distortion import undistort_pixels
from ctxpose.models.triangulation import triangulate_dlt
from ctxpose.skeleton import Skeleton

TRIANGULATION = ("algebraic", "ransac")
VOLUMETRIC = ("contextpose", "volumetric")


@dataclass
class MultiViewOptions:
    """``tolerance_mm`` / ``max_passes``: the volumetric models' cuboid re-centring; ``batch_size``: frames per
    network batch."""

    tolerance_mm: float = 5.0
    max_passes: int = 5
    batch_size: int = 4

    def __post_init__(self) -> None:
        if self.max_passes < 1 or self.batch_size < 1:
            raise ConfigError("max_passes and batch_size: expected >= 1")


@dataclass
class MultiViewResult:
    """One person in one synchronized frame (V views, J joints).

    Attributes:
        keypoints_3d: (J, 3) joints in the calibration's world frame, mm.
        keypoints_3d_relative: (J, 3) the same minus the pelvis, mm.
        keypoints_2d: (V, J, 2) ``keypoints_3d`` projected into each view's image, with its distortion, px.
        boxes: (V, 4) x, y, w, h px of each view's box (NaN where the view had none). scores: (V,) (NaN: none).
        views_used: (V,) bool, the views the network ran on.
        root: (3,) cuboid centre, world mm (NaN for the triangulation models). passes: network passes.
    """

    keypoints_3d: np.ndarray
    keypoints_3d_relative: np.ndarray
    keypoints_2d: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    views_used: np.ndarray
    root: np.ndarray
    passes: int


class MultiViewEstimator:
    """A loaded network of any architecture with what multi-view inference needs.

    Args:
        model: follows the forward contract of :mod:`ctxpose.models.triangulation`.
        architecture: ``model.architecture`` (algebraic, ransac, volumetric, contextpose).
        skeleton: the joints the model outputs. image_shape: (H, W) network input.
        device: where it runs. amp: None, "bf16" or "fp16".
    """

    def __init__(self, model: torch.nn.Module, architecture: str, skeleton: Skeleton, image_shape: Sequence[int],
                 device: torch.device | str = "cpu", amp: Any = None) -> None:
        if architecture not in TRIANGULATION + VOLUMETRIC:
            raise ConfigError(f"model.architecture: {architecture!r} is not one of {TRIANGULATION + VOLUMETRIC}")
        self.model, self.architecture, self.skeleton = model, architecture, skeleton
        self.image_shape = (int(image_shape[0]), int(image_shape[1]))
        self.device, self.amp = torch.device(device), amp

    @classmethod
    def from_config(cls, cfg: Any, checkpoint: str | Path, device: torch.device | str = "cpu",
                    amp: Any = None) -> MultiViewEstimator:
        from ctxpose.engine.infer import load_inference_model
        from ctxpose.skeleton import get_skeleton

        device = torch.device(device)
        model = load_inference_model(cfg, checkpoint, device)
        return cls(model, cfg.model.architecture, get_skeleton(cfg.model.skeleton), cfg.model.image_shape, device,
                   amp)

    @property
    def needs_root(self) -> bool:
        return self.architecture in VOLUMETRIC

    def crop(self, frame: np.ndarray, box: np.ndarray, camera: Camera) -> tuple[np.ndarray, np.ndarray]:
        """(3, H, W) normalised undistorted crop of one box (x, y, w, h) and its projection matrix (3, 4),
        world mm -> crop px."""
        crop, crop_cam = undistorted_crop(frame, camera, square_crop_box(box), self.image_shape)
        return normalize_to_tensor(crop), crop_cam.projection

    @torch.no_grad()
    def forward(self, images: np.ndarray, proj: np.ndarray, roots: np.ndarray | None) -> np.ndarray:
        """(B, J, 3) world mm from images (B, V, 3, H, W), proj (B, V, 3, 4) and roots (B, 3) world mm."""
        from ctxpose.engine.precision import autocast_context

        x = torch.as_tensor(images, device=self.device)
        p = torch.as_tensor(proj, dtype=torch.float32, device=self.device)
        root = None if roots is None else torch.as_tensor(roots, dtype=torch.float32, device=self.device)
        angles = None if roots is None else torch.zeros(len(roots), device=self.device)
        with autocast_context(self.device, self.amp):
            out = self.model(x, p, root, angles)
        return out.keypoints_3d.double().cpu().numpy()


def _box_centre_roots(boxes: np.ndarray, cameras: Sequence[Camera]) -> np.ndarray:
    """(B, 3) world mm: the point triangulated from the (undistorted) box centres of each frame's views.

    Args: boxes (B, V, 4) x, y, w, h px (the views of one group, all present); cameras: the V cameras.
    """
    centres = boxes[..., :2] + boxes[..., 2:] / 2.0  # (B, V, 2)
    und = np.stack([undistort_pixels(centres[:, v][:, None], c.K, c.dist)[:, 0] if c.has_distortion
                    else centres[:, v] for v, c in enumerate(cameras)], axis=1)
    proj = torch.as_tensor(np.stack([c.projection for c in cameras]), dtype=torch.float64)
    return triangulate_dlt(proj, torch.as_tensor(und[:, :, None, :], dtype=torch.float64))[:, 0].numpy()


def _crops(estimator: MultiViewEstimator, frames: list[list[np.ndarray]], boxes: np.ndarray,
           cameras: Sequence[Camera]) -> tuple[np.ndarray, np.ndarray]:
    """Crops (B, V, 3, H, W) at the estimator's input size and their projection matrices (B, V, 3, 4) of B
    frames' V images (B lists of V) and boxes (B, V, 4)."""
    images = np.zeros((*boxes.shape[:2], 3, *estimator.image_shape), np.float32)
    proj = np.zeros((*boxes.shape[:2], 3, 4))
    for i, views in enumerate(frames):
        for j, (frame, camera) in enumerate(zip(views, cameras, strict=True)):
            images[i, j], proj[i, j] = estimator.crop(frame, boxes[i, j], camera)
    return images, proj


def _run_group(estimator: MultiViewEstimator, frames: list[list[np.ndarray]], boxes: np.ndarray,
               cameras: Sequence[Camera], options: MultiViewOptions,
               root_model: MultiViewEstimator | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keypoints (B, J, 3), roots (B, 3) (NaN for triangulation) and passes (B,) of B frames seen by the same
    views: ``frames`` B lists of V images, ``boxes`` (B, V, 4), ``cameras`` the V cameras."""
    n = len(frames)
    images, proj = _crops(estimator, frames, boxes, cameras)
    if not estimator.needs_root:
        return estimator.forward(images, proj, None), np.full((n, 3), np.nan), np.ones(n, np.int64)
    if root_model is not None:
        root_inputs = (images, proj) if root_model.image_shape == estimator.image_shape else _crops(
            root_model, frames, boxes, cameras)
        roots = root_model.forward(*root_inputs, None)[:, root_model.skeleton.root]
    else:
        roots = _box_centre_roots(boxes, cameras)
    keypoints = np.zeros((n, estimator.skeleton.num_joints, 3))
    passes = np.zeros(n, np.int64)
    active = np.arange(n)
    for k in range(options.max_passes):
        kp = estimator.forward(images[active], proj[active], roots[active])
        keypoints[active] = kp
        passes[active] += 1
        if k == options.max_passes - 1:
            break
        new = kp[:, estimator.skeleton.root]
        again = np.linalg.norm(new - roots[active], axis=-1) >= options.tolerance_mm
        roots[active[again]] = new[again]  # the others keep the root their keypoints were computed with
        active = active[again]
        if not len(active):
            break
    return keypoints, roots, passes


def estimate_multiview_poses(estimator: MultiViewEstimator, frames: Sequence[Sequence[np.ndarray]],
                             boxes: Sequence[Sequence[np.ndarray | None]], cameras: Sequence[Camera],
                             options: MultiViewOptions | None = None,
                             scores: Sequence[Sequence[float | None]] | None = None,
                             root_model: MultiViewEstimator | None = None) -> list[MultiViewResult | None]:
    """World-frame 3D poses of one person seen by V synchronized calibrated cameras; no files read or written.

    Args:
        estimator: :meth:`MultiViewEstimator.from_config`.
        frames: F synchronized frames, each V images (H_v, W_v, 3) uint8 BGR, view v taken by ``cameras[v]``.
        boxes: per frame, per view, the person's box (x, y, w, h) px, or None where the view has none.
        cameras: V cameras (world mm -> px of the full frame, with its lens distortion).
        options: batching and the volumetric models' re-centring (default :class:`MultiViewOptions`).
        scores: per frame, per view, the box's score (default 1).
        root_model: an algebraic/RANSAC estimator whose triangulated pelvis centres the volumetric models' first
            cuboid (default: the point triangulated from the box centres).

    Returns:
        Per frame, a :class:`MultiViewResult`, or None where fewer than 2 views have a box.

    Example::

        est = MultiViewEstimator.from_config(load_config("configs/tiny_cpu_alg.yaml"), "alg.pt")
        cams = [v.camera for v in read_calibration(Path("rig.json"), ["cam0.mp4", "cam1.mp4"])]
        people = estimate_multiview_poses(est, [[frame0, frame1]], [[box0, box1]], cams)
        people[0].keypoints_3d  # (17, 3) mm, the calibration's world frame
    """
    options = options or MultiViewOptions()
    v_all = len(cameras)
    if v_all < 2:
        raise ConfigError(f"{v_all} view: the multi-view models need at least 2 calibrated views")
    if root_model is not None and root_model.architecture not in TRIANGULATION:
        raise ConfigError(f"root model: {root_model.architecture} is not a triangulation model (algebraic, ransac)")
    if len(boxes) != len(frames) or any(len(f) != v_all or len(b) != v_all for f, b in zip(frames, boxes,
                                                                                          strict=True)):
        raise ValueError(f"frames and boxes: F lists of {v_all} views expected")
    groups: dict[tuple[int, ...], list[int]] = {}
    for f in range(len(frames)):
        views = tuple(v for v in range(v_all) if boxes[f][v] is not None)
        if len(views) >= 2:
            groups.setdefault(views, []).append(f)
    results: list[MultiViewResult | None] = [None] * len(frames)
    pelvis = estimator.skeleton.root
    for views, fs in groups.items():
        cams = [cameras[v] for v in views]
        for start in range(0, len(fs), options.batch_size):
            chunk = fs[start: start + options.batch_size]
            bx = np.array([[np.asarray(boxes[f][v], np.float64).reshape(4) for v in views] for f in chunk])
            images = [[frames[f][v] for v in views] for f in chunk]
            kp, roots, passes = _run_group(estimator, images, bx, cams, options, root_model)
            for i, f in enumerate(chunk):
                all_boxes = np.full((v_all, 4), np.nan)
                all_scores = np.full(v_all, np.nan)
                used = np.zeros(v_all, bool)
                for j, v in enumerate(views):
                    all_boxes[v], used[v] = bx[i, j], True
                    all_scores[v] = 1.0 if scores is None or scores[f][v] is None else float(scores[f][v])
                uv = np.stack([c.project(kp[i]) for c in cameras])
                results[f] = MultiViewResult(kp[i], kp[i] - kp[i, pelvis], uv, all_boxes, all_scores, used,
                                             roots[i], int(passes[i]))
    return results


# ---------------------------------------------------------------------------------------------- the command


def _view_detections(detections: Any, source: Any, index: int, shared_names: set[str]) -> list[Any]:
    """The boxes of frame ``index`` of one view: a video's by its file name and frame (``image_id``); a folder's
    image by ``folder/image`` name, or by the image's name alone where no other view has an image of that name."""
    by_key = detections.by_key
    if source.kind == "video":
        return by_key.get((source.name, index), [])
    name = source.images[index].name
    keys = [f"{source.name}/{name}"] + ([] if name in shared_names else [name])
    return [d for k in keys for d in by_key.get((k, index), []) + by_key.get((k, None), [])]



@dataclass
class MultiViewRequest:
    """What ``ctxpose infer INPUT... --calibration FILE`` was asked.

    Attributes:
        inputs: one video or folder of images per view. calibration: the rig file. out: output folder.
        detections / box / detector: the person boxes (exactly one; see :class:`ctxpose.engine.infer.InferRequest`).
        min_score: boxes below are ignored. frames_per_batch: synchronized frames decoded and run together.
    """

    inputs: list[Path]
    calibration: Path
    out: Path
    detections: Path | None = None
    box: np.ndarray | None = None
    detector: str | None = None
    detector_weights: Path | None = None
    min_score: float = 0.5
    frames_per_batch: int = 4


@dataclass
class MultiViewSummary:
    out: Path
    sources: list[str]
    frames: int = 0
    people: int = 0
    seconds: float = 0.0
    lengths: list[int] = field(default_factory=list)
    interrupted: bool = False

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0


def run_infer_multiview(request: MultiViewRequest,
                        estimator: MultiViewEstimator | Callable[[], MultiViewEstimator],
                        options: MultiViewOptions | None = None,
                        progress: Callable[[int, int, float], None] | None = None,
                        meta: dict[str, Any] | None = None,
                        root_model: MultiViewEstimator | Callable[[], MultiViewEstimator] | None = None,
                        ) -> MultiViewSummary:
    """Run a multi-view model over the synchronized frames of ``request.inputs``; write ``predictions.npz`` and
    ``predictions.jsonl`` into ``request.out`` at the end (or, with ``meta['interrupted']``, on Ctrl-C).

    Args:
        estimator: the loaded model, or a function loading it (called after the inputs are checked).
        progress: ``progress(frames done, frames in all, seconds since the model was loaded)``.
        meta: extra entries for the files' ``meta`` (config, checkpoint).
        root_model: for the volumetric models, an algebraic/RANSAC estimator (or a function loading it) whose
            pelvis centres the first cuboid (see :func:`estimate_multiview_poses`).

    Raises:
        ConfigError / DataError: bad options or inputs (one line naming the file), before anything is written.
    """
    import time

    from ctxpose.data import infer_inputs as inp
    from ctxpose.data.infer_rig import MultiViewTable, read_calibration, write_multiview_predictions
    from ctxpose.engine.infer import InferRequest, boxes_source
    from ctxpose.errors import OutputError
    from ctxpose.utils.io import check_writable_dir

    options = options or MultiViewOptions()
    kind = boxes_source(InferRequest(inputs=request.inputs, out=request.out, detections=request.detections,
                                      box=request.box, detector=request.detector,
                                      detector_weights=request.detector_weights, min_score=request.min_score))
    sources = inp.find_sources(request.inputs)
    if len(sources) != len(request.inputs) or any(s.path != Path(p) for s, p in zip(sources, request.inputs,
                                                                                    strict=False)):
        raise DataError("--calibration: each INPUT is one view: a video or a folder of images (loose image files "
                        f"are not a view); got {', '.join(map(str, request.inputs))}")
    if len(sources) < 2:
        raise ConfigError(f"--calibration: {len(sources)} view ({sources[0].path}); the multi-view models need at "
                          "least 2 synchronized views (for one camera, run infer without --calibration)")
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise DataError(f"--calibration: two views have the same file name ({', '.join(names)}); the calibration "
                        "and the boxes name views by file name")
    rig = read_calibration(request.calibration, names)
    cameras = [r.camera for r in rig]
    hws = [inp.source_hw(s) for s in sources]
    for s, r, hw in zip(sources, rig, hws, strict=True):
        if r.image_hw is not None and r.image_hw != hw:
            raise DataError(f"{s.path}: {hw[1]}x{hw[0]} frames, but {request.calibration} calibrates camera "
                            f"{r.camera.name} for {r.image_hw[1]}x{r.image_hw[0]}")
    if request.box is not None:
        for s, hw in zip(sources, hws, strict=True):
            inp.check_box_in_image(request.box, hw, f"--box for {s.path}")
    lengths = [len(s.images) if s.kind == "images" else inp.open_video_frame_count(s.path) for s in sources]
    known = [n for n in lengths if n > 0]
    total = min(known) if known else 0
    detections = inp.read_detections(request.detections) if kind == "--boxes" else None
    if detections is not None and any(file is None for file, _ in detections.by_key):
        raise DataError(f"{request.detections}: with several views every box names its view: file_name (COCO) or "
                        "file (CSV), the video's file name or folder/image.png")
    detector = None
    if kind == "--detector":
        from ctxpose.engine.detector import load_person_detector

        detector = load_person_detector(request.detector, request.detector_weights)
    try:
        check_writable_dir(request.out)
    except OSError as e:
        raise OutputError(f"{request.out}: cannot write ({e})") from None
    est = estimator if isinstance(estimator, MultiViewEstimator) else estimator()
    if root_model is not None:
        if not est.needs_root:
            raise ConfigError(f"--root-config: model.architecture {est.architecture} has no cuboid to centre (only "
                              "volumetric and contextpose do)")
        root_model = root_model if isinstance(root_model, MultiViewEstimator) else root_model()
        if root_model.architecture not in TRIANGULATION:
            raise ConfigError(f"--root-config: model.architecture {root_model.architecture}; the root model is an "
                              "algebraic or ransac model")
    table = MultiViewTable(est.skeleton.num_joints, len(sources))
    summary = MultiViewSummary(request.out, [str(s.path) for s in sources], lengths=lengths)
    image_names = [p.name for s in sources for p in s.images]
    shared_names = {n for n in image_names if image_names.count(n) > 1}
    start = time.perf_counter()

    def best(v: int, index: int, frame: np.ndarray) -> tuple[np.ndarray | None, float | None]:
        if request.box is not None:
            return request.box, 1.0
        dets = detector(frame) if detector is not None else _view_detections(
            detections, sources[v], index, shared_names)  # type: ignore[arg-type]
        dets = [d for d in dets if d.score >= request.min_score]
        if not dets:
            return None, None
        top = max(dets, key=lambda d: d.score)
        return top.box, top.score

    def write(interrupted: bool = False) -> None:
        info = {"sources": summary.sources, "cameras": [c.name for c in cameras], "lengths": lengths,
                "frames": summary.frames, "interrupted": interrupted, "architecture": est.architecture,
                "joint_names": list(est.skeleton.names), "units": "mm, px, s",
                "frame": f"world: the frame of {request.calibration} (x_cam = R x_world + t)",
                "min_score": request.min_score, "boxes": kind, "person": "one per frame: each view's top box",
                "first_root": None if not est.needs_root else "box centres" if root_model is None else
                f"{root_model.architecture} model's pelvis",
                **(meta or {})}
        try:
            write_multiview_predictions(request.out, table, cameras, info)
        except OSError as e:
            raise OutputError(f"{e.filename or request.out}: cannot write ({e.strerror or e})") from None

    def run_chunk(chunk: list[tuple[int, float, list[np.ndarray]]]) -> None:
        boxes, scores = [], []
        for index, _, views in chunk:
            picked = [best(v, index, frame) for v, frame in enumerate(views)]
            boxes.append([b for b, _ in picked])
            scores.append([s for _, s in picked])
        people = estimate_multiview_poses(est, [c[2] for c in chunk], boxes, cameras, options, scores,
                                          root_model)  # type: ignore[arg-type]
        for (index, t, _), p in zip(chunk, people, strict=True):
            row = None if p is None else {
                "keypoints_3d": p.keypoints_3d, "keypoints_3d_relative": p.keypoints_3d_relative,
                "keypoints_2d": p.keypoints_2d, "boxes": p.boxes, "scores": p.scores, "views_used": p.views_used,
                "root": p.root, "passes": p.passes}
            table.add_frame(index, t, row)
            summary.frames += 1
            summary.people += p is not None

    iters = [inp.iter_frames(s) for s in sources]
    try:
        chunk: list[tuple[int, float, list[np.ndarray]]] = []
        while not total or summary.frames + len(chunk) < total:
            items = []
            for v, it in enumerate(iters):
                item = next(it, None)
                if item is None:
                    break
                if item[2].shape[:2] != hws[v]:
                    raise DataError(f"{sources[v].images[item[0]] if sources[v].kind == 'images' else sources[v].path}"
                                    f": frame {item[0]} is {item[2].shape[1]}x{item[2].shape[0]}, the view's first "
                                    f"frame {hws[v][1]}x{hws[v][0]} (a view's frames must have one size)")
                items.append(item)
            if len(items) < len(iters):
                break
            chunk.append((items[0][0], items[0][1], [x[2] for x in items]))
            if len(chunk) == request.frames_per_batch:
                run_chunk(chunk)
                chunk = []
                if progress is not None:
                    progress(summary.frames, total, time.perf_counter() - start)
        if chunk:
            run_chunk(chunk)
            if progress is not None:
                progress(summary.frames, total, time.perf_counter() - start)
        write()
    except (KeyboardInterrupt, Stopped):
        summary.interrupted = True
        write(interrupted=True)
        raise
    finally:
        for it in iters:
            it.close()
        summary.seconds = time.perf_counter() - start
    return summary
