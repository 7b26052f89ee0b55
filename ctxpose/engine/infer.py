"""Metric 3D poses from one's own frames: crop, camera, root, world, network (``ctxpose infer``'s engine).

The network needs four things a benchmark hands it; from a single image they are:

* the crop: each person's box squared about its centre, cut and resized to the config's input size with
  lens distortion removed, in one ``cv2.remap`` (:func:`ctxpose.data.transforms.undistorted_crop`, the path
  preprocessing takes);
* the camera: the given intrinsics, or a default field of view (:mod:`ctxpose.geometry.monocular`);
* the world: the camera frame turned upright assuming no roll (``pitch`` degrees down), camera at the origin;
* the root (cuboid centre): see :data:`ROOT_METHODS`.

:func:`estimate_poses` is the Python entry point (frames in, per-person results out, camera frame, mm).
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
from ctxpose.errors import ConfigError, Stopped
from ctxpose.geometry.cameras import Camera, camera_to_pixels
from ctxpose.geometry.distortion import undistort_pixels
from ctxpose.geometry.monocular import (
    DEFAULT_FOV_DEG,
    back_project,
    bone_length_depth,
    intrinsics_from_focal,
    intrinsics_from_fov,
    person_area_mm2,
    rootnet_depth,
    upright_rotation,
)
from ctxpose.skeleton import Skeleton

#: How the root (cuboid centre) is found. "box": the box centre's ray at RootNet's depth, one pass.
#: "rootnet": then, each pass, the ray of the network's pelvis at RootNet's depth; "bones": the same ray at
#: the depth where the lifted pose has the prior's bone lengths; "network": the network's own 3D pelvis.
#: The last three re-centre the cuboid and run again until the root moves less than ``tolerance_mm``.
#: "depth": ``root_depth`` mm along the network's pelvis ray (``--root-depth``); "given": roots passed in.
ROOT_METHODS = ("box", "rootnet", "bones", "network", "depth", "given")
DEFAULT_ROOT_METHOD = "rootnet"
#: the RootNet depth's person size, the real length of a person box's longer side: 1800 mm (an adult's
#: standing height with a box's margin; the training subject S1's synthetic mask boxes: 1830 mm median).
#: RootNet's published 2000 x 2000 mm area is a 1600 mm side (:data:`ROOTNET_PERSON_SIZE_MM`), 13% short
#: of those boxes: measured in docs/commands/infer.md.
DEFAULT_PERSON_SIZE_MM = 1800.0


@dataclass
class InferOptions:
    """Root and world settings (see :data:`ROOT_METHODS`); ``pitch`` degrees, camera tilted down;
    ``person_size_mm``: the real length of a person box's longer side in the RootNet depth."""

    root_method: str = DEFAULT_ROOT_METHOD
    root_depth: float | None = None
    tolerance_mm: float = 5.0
    max_passes: int = 5
    pitch: float = 0.0
    batch_size: int = 16
    person_size_mm: float = DEFAULT_PERSON_SIZE_MM

    def __post_init__(self) -> None:
        if not self.person_size_mm > 0:
            raise ConfigError(f"--person-size {self.person_size_mm}: expected a length > 0 mm")
        if self.root_depth is not None:
            if not self.root_depth > 0:
                raise ConfigError(f"--root-depth {self.root_depth}: expected a depth > 0 mm")
            self.root_method = "depth"
        if self.root_method not in ROOT_METHODS:
            raise ConfigError(f"--root {self.root_method}: expected one of {', '.join(ROOT_METHODS[:4])}")
        if self.root_method == "depth" and self.root_depth is None:
            raise ConfigError("root method 'depth' needs --root-depth MM")
        if self.max_passes < 1 or self.batch_size < 1:
            raise ConfigError("max_passes and batch_size: expected >= 1")


@dataclass
class Intrinsics:
    """The camera of the input frames: ``K`` (3, 3) px, ``dist`` (5,) OpenCV coefficients, and how it was
    obtained (printed and written with the results)."""

    K: np.ndarray
    dist: np.ndarray = field(default_factory=lambda: np.zeros(5))
    assumption: str = "given"

    @classmethod
    def choose(cls, image_hw: tuple[int, int], K: np.ndarray | None = None, dist: np.ndarray | None = None,
               focal: float | None = None, fov: float | None = None, source: str = "") -> Intrinsics:
        """One of: a full ``K`` (and ``dist``), a focal length (px), a horizontal FOV (deg), or the default FOV;
        the principal point at the image centre unless ``K`` is given."""
        given = [name for name, v in (("--camera", K), ("--focal", focal), ("--fov", fov)) if v is not None]
        if len(given) > 1:
            raise ConfigError(f"{', '.join(given)}: give one of them")
        try:
            if K is not None:
                return cls(np.asarray(K, np.float64), np.zeros(5) if dist is None else np.asarray(dist, np.float64),
                           f"camera file {source}".strip())
            if focal is not None:
                return cls(intrinsics_from_focal(image_hw, focal), np.zeros(5),
                           f"focal {focal:g} px, principal point at the image centre, no distortion")
            if fov is not None:
                return cls(intrinsics_from_fov(image_hw, fov), np.zeros(5),
                           f"{fov:g} deg horizontal field of view, principal point at the image centre")
        except ValueError as e:
            raise ConfigError(f"{given[0]}: {e}") from None
        return cls(intrinsics_from_fov(image_hw, DEFAULT_FOV_DEG), np.zeros(5),
                   f"default: {DEFAULT_FOV_DEG:g} deg horizontal field of view, principal point at the image "
                   "centre, no distortion (pass --camera, --focal or --fov)")

    def camera(self, R: np.ndarray) -> Camera:
        return Camera(R=R, t=np.zeros(3), K=self.K, dist=self.dist)


@dataclass
class PersonResult:
    """One person in one frame (camera frame: x right, y down, z forward, mm).

    Attributes:
        box: (4,) x, y, w, h px. score: detector score. track_id: id across frames (-1 before tracking).
        keypoints_3d: (J, 3) absolute joints, camera frame mm.
        keypoints_3d_relative: (J, 3) the same minus the pelvis, mm.
        keypoints_2d: (J, 2) projection into the input image (with its distortion), px.
        root: (3,) cuboid centre the network ran with, camera frame mm. root_method: how it was found.
        passes: network passes run for it.
    """

    box: np.ndarray
    score: float
    keypoints_3d: np.ndarray
    keypoints_3d_relative: np.ndarray
    keypoints_2d: np.ndarray
    root: np.ndarray
    root_method: str
    passes: int
    track_id: int = -1


def load_inference_model(cfg: Any, checkpoint: str | Path, device: torch.device) -> torch.nn.Module:
    """The one place ``infer`` loads a model (config + weights, eval mode, on ``device``)."""
    from ctxpose.models.build import load_model

    return load_model(cfg, checkpoint, device)


class PoseEstimator:
    """A loaded network with what inference needs besides frames.

    Args:
        model: a :class:`ctxpose.models.ContextPoseNet` in eval mode.
        limb_mean, limb_std: (L,) bone-length prior, mm (for the "bones" root).
        image_shape: (H, W) network input.
        device: where it runs. amp: None, "bf16" or "fp16".
    """

    def __init__(self, model: torch.nn.Module, limb_mean: np.ndarray, limb_std: np.ndarray,
                 image_shape: Sequence[int], device: torch.device | str = "cpu", amp: Any = None) -> None:
        self.model, self.device, self.amp = model, torch.device(device), amp
        self.skeleton: Skeleton = model.skeleton
        self.limb_mean, self.limb_std = np.asarray(limb_mean, np.float64), np.asarray(limb_std, np.float64)
        self.image_shape = (int(image_shape[0]), int(image_shape[1]))

    @classmethod
    def from_config(cls, cfg: Any, checkpoint: str | Path, device: torch.device | str = "cpu",
                    amp: Any = None) -> PoseEstimator:
        from ctxpose.models.build import load_limb_prior
        from ctxpose.skeleton import get_skeleton

        if cfg.model.architecture in ("algebraic", "ransac"):
            raise ConfigError(f"model.architecture: {cfg.model.architecture} triangulates several calibrated views; "
                              "one camera runs the volumetric models (contextpose, volumetric); for several "
                              "synchronized calibrated views pass --calibration FILE")
        device = torch.device(device)
        model = load_inference_model(cfg, checkpoint, device)
        prior = load_limb_prior(cfg.dataset.limb_length_path, get_skeleton(cfg.model.skeleton))
        return cls(model, prior.mean.numpy(), prior.std.numpy(), cfg.model.image_shape, device, amp)

    # ------------------------------------------------------------------ one batch of crops

    @torch.no_grad()
    def _forward(self, images: torch.Tensor, proj: torch.Tensor, roots_world: np.ndarray) -> np.ndarray:
        from ctxpose.engine.precision import autocast_context

        root = torch.as_tensor(roots_world, dtype=torch.float32, device=self.device)
        with autocast_context(self.device, self.amp):
            out = self.model(images, proj, root, torch.zeros(len(root), device=self.device))
        return out.keypoints_3d.double().cpu().numpy()

    def run_crops(self, crops: np.ndarray, crop_K: np.ndarray, boxes: np.ndarray, intr: Intrinsics,
                  options: InferOptions, given_roots: np.ndarray | None = None) -> list[dict[str, Any]]:
        """The network with the root search on N crops of the same camera.

        Args:
            crops: (N, 3, H, W) float32 normalised crops. crop_K: (N, 3, 3) their pinhole intrinsics, px.
            boxes: (N, 4) x, y, w, h in the (distorted) input image, px.
            intr: the input camera. options: root and world settings.
            given_roots: (N, 3) camera-frame roots, mm, for ``root_method="given"``.

        Returns:
            Per crop: keypoints_3d, keypoints_3d_relative, keypoints_2d, root, passes.
        """
        n = len(crops)
        R = upright_rotation(options.pitch)
        K, method = intr.K, options.root_method
        proj_np = crop_K @ np.concatenate([R, np.zeros((3, 1))], axis=1)[None]
        images = torch.as_tensor(crops, device=self.device)[:, None]  # (N, V=1, 3, H, W)
        proj = torch.as_tensor(proj_np, dtype=torch.float32, device=self.device)[:, None]
        centres = boxes[:, :2] + boxes[:, 2:] / 2.0
        if np.any(intr.dist != 0):  # the box centre in the undistorted image
            centres = undistort_pixels(centres[:, None], K, intr.dist)[:, 0]
        depth_rootnet = rootnet_depth(boxes[:, 2:], K[0, 0], K[1, 1], person_area_mm2(options.person_size_mm))
        if method == "given":
            if given_roots is None or np.asarray(given_roots).shape != (n, 3):
                raise ValueError(f"root_method 'given' needs ({n}, 3) roots")
            roots = np.asarray(given_roots, np.float64)
        else:
            depth0 = np.full(n, options.root_depth) if method == "depth" else depth_rootnet
            roots = back_project(centres, K, depth0)
        single = method in ("box", "given")
        keypoints = np.zeros((n, self.skeleton.num_joints, 3))
        passes = np.zeros(n, np.int64)
        active = np.arange(n)
        pelvis = self.skeleton.root
        ran = roots.copy()  # the root each person's last pass ran with (what is written)
        for k in range(1 if single else options.max_passes):
            ran[active] = roots[active]
            kp_world = self._forward(images[active], proj[active], roots[active] @ R)  # camera -> world: R^T x
            kp_cam = kp_world @ R.T
            keypoints[active] = kp_cam
            passes[active] += 1
            if single or k == options.max_passes - 1:
                break
            pel = kp_cam[:, pelvis]
            uv = pel[:, :2] / pel[:, 2:3] * K[[0, 1], [0, 1]] + K[:2, 2]  # undistorted pixels of the pelvis
            if method == "network":
                new = pel
            elif method == "rootnet":
                new = back_project(uv, K, depth_rootnet[active])
            elif method == "depth":
                new = back_project(uv, K, np.full(len(active), options.root_depth))
            else:  # bones
                rel_depth = kp_cam[..., 2] - pel[:, None, 2]
                uv_all = kp_cam[..., :2] / kp_cam[..., 2:3] * K[[0, 1], [0, 1]] + K[:2, 2]
                z = bone_length_depth(uv_all, K, rel_depth, np.array(self.skeleton.bones), self.limb_mean,
                                      self.limb_std)
                new = back_project(uv, K, z)
            moved = np.linalg.norm(new - roots[active], axis=-1)
            roots[active] = new
            active = active[moved >= options.tolerance_mm]
            if not len(active):
                break
        rel = keypoints - keypoints[:, pelvis: pelvis + 1]
        kp2d = camera_to_pixels(keypoints, K, intr.dist if np.any(intr.dist != 0) else None)
        return [{"keypoints_3d": keypoints[i], "keypoints_3d_relative": rel[i], "keypoints_2d": kp2d[i],
                 "root": ran[i], "passes": int(passes[i])} for i in range(n)]

    # ------------------------------------------------------------------ frames

    def crop(self, frame: np.ndarray, box: np.ndarray, intr: Intrinsics) -> tuple[np.ndarray, np.ndarray]:
        """(3, H, W) normalised crop of one box (x, y, w, h) and its pinhole intrinsics (3, 3)."""
        crop, crop_cam = undistorted_crop(frame, intr.camera(np.eye(3)), square_crop_box(box), self.image_shape)
        return normalize_to_tensor(crop), crop_cam.K


def estimate_poses(estimator: PoseEstimator, frames: Sequence[np.ndarray], boxes: Sequence[Sequence[Any]],
                   intrinsics: Intrinsics | None = None, options: InferOptions | None = None,
                   scores: Sequence[Sequence[float]] | None = None,
                   given_roots: Sequence[np.ndarray] | None = None) -> list[list[PersonResult]]:
    """3D poses of the people in ``frames``, camera frame, mm; no files read or written.

    Args:
        estimator: :meth:`PoseEstimator.from_config`.
        frames: F images (H, W, 3) uint8 BGR (as ``cv2.imread``), all of one camera and size.
        boxes: per frame, its people's boxes (x, y, w, h) px (an empty list: nobody).
        intrinsics: the camera (default: :meth:`Intrinsics.choose`'s default field of view).
        options: root/world settings (default :class:`InferOptions`).
        scores: per frame, per box, the detector's score (default 1).
        given_roots: per frame, (P, 3) camera-frame roots, mm, for ``options.root_method == "given"``.

    Returns:
        Per frame, a list of :class:`PersonResult` in the order of its boxes.

    Example::

        est = PoseEstimator.from_config(load_config("run/config.yaml"), "run/checkpoints/last.pt")
        people = estimate_poses(est, [cv2.imread("me.jpg")], [[(120, 40, 200, 460)]])
        people[0][0].keypoints_3d  # (17, 3) mm, camera frame
    """
    options = options or InferOptions()
    if len(boxes) != len(frames):
        raise ValueError(f"boxes: one list per frame expected ({len(frames)}), got {len(boxes)}")
    if not len(frames):
        return []
    intr = intrinsics or Intrinsics.choose(frames[0].shape[:2])
    flat = [(f, p) for f in range(len(frames)) for p in range(len(boxes[f]))]
    results: list[list[PersonResult | None]] = [[None] * len(b) for b in boxes]
    for start in range(0, len(flat), options.batch_size):
        chunk = flat[start: start + options.batch_size]
        crops, Ks, bx = [], [], []
        for f, p in chunk:
            box = np.asarray(boxes[f][p], np.float64).reshape(4)
            image, K = estimator.crop(frames[f], box, intr)
            crops.append(image)
            Ks.append(K)
            bx.append(box)
        roots = None
        if options.root_method == "given":
            roots = np.stack([np.asarray(given_roots[f][p], np.float64) for f, p in chunk])
        out = estimator.run_crops(np.stack(crops), np.stack(Ks), np.stack(bx), intr, options, roots)
        for (f, p), o, box in zip(chunk, out, bx, strict=True):
            score = 1.0 if scores is None else float(scores[f][p])
            results[f][p] = PersonResult(box=box, score=score, root_method=options.root_method, **o)
    return results  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------- the command


@dataclass
class InferRequest:
    """What ``ctxpose infer`` was asked (paths and settings; validated by :func:`run_infer`).

    Attributes:
        inputs: images, folders of images, videos. out: output folder.
        detections: a COCO results .json or .csv of boxes; box: one fixed (x, y, w, h) box; detector: "builtin".
        camera_file / focal / fov: the camera (at most one). min_score: boxes below are ignored.
        smooth: Gaussian sigma in frames for ``keypoints_3d_smooth`` (videos), or None.
        render: also draw each frame (mp4 per video, PNG per image).
        frames_per_batch: frames decoded and run together.
    """

    inputs: list[Path]
    out: Path
    detections: Path | None = None
    box: np.ndarray | None = None
    detector: str | None = None
    detector_weights: Path | None = None
    camera_file: Path | None = None
    focal: float | None = None
    fov: float | None = None
    min_score: float = 0.5
    smooth: float | None = None
    render: bool = False
    frames_per_batch: int = 8


@dataclass
class InferSummary:
    """What :func:`run_infer` did (also ``meta`` of ``predictions.npz``)."""

    out: Path
    sources: list[str]
    frames: int = 0
    people: int = 0
    empty_frames: int = 0
    seconds: float = 0.0
    cameras: list[str] = field(default_factory=list)
    interrupted: bool = False
    rendered: list[str] = field(default_factory=list)

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0


def boxes_source(request: InferRequest) -> str:
    """Which one box source the request names ("--boxes", "--box" or "--detector"), its options checked (one line
    for none or several sources, --detector-weights without --detector, a --min-score outside 0..1)."""
    given = [n for n, v in (("--boxes", request.detections), ("--box", request.box),
                            ("--detector", request.detector)) if v is not None]
    if len(given) != 1:
        raise ConfigError(f"{', '.join(given)}: give one of --boxes FILE, --box x,y,w,h or --detector builtin"
                          if given else "no person boxes: pass --boxes FILE (COCO results .json or .csv), "
                          "--box x,y,w,h, or --detector builtin")
    if request.detector_weights is not None and request.detector is None:
        raise ConfigError("--detector-weights: only with --detector builtin")
    if not 0.0 <= request.min_score <= 1.0:
        raise ConfigError(f"--min-score {request.min_score}: expected 0..1")
    if request.smooth is not None and not request.smooth > 0:
        raise ConfigError(f"--smooth {request.smooth}: expected a sigma > 0 frames")
    return given[0]


def run_infer(request: InferRequest, estimator: PoseEstimator | Callable[[], PoseEstimator],
              options: InferOptions, progress: Callable[[str, int, int, float], None] | None = None,
              meta: dict[str, Any] | None = None) -> InferSummary:
    """Run the network over every frame of ``request.inputs``; write ``predictions.npz`` / ``.jsonl`` (and
    renders) into ``request.out`` after each finished input, so a stop or a bad later input keeps them.

    Args:
        estimator: the loaded model, or a function loading it (called after the inputs are checked).
        progress: ``progress(source name, its frames done, its frames or 0, seconds since the model was loaded)``.
        meta: extra entries for the files' ``meta`` (config, checkpoint).

    Raises:
        ConfigError / DataError: bad options or inputs (one line naming the file), before anything is written
            for that input. KeyboardInterrupt: after writing what was finished (``meta['interrupted']``).
    """
    import time

    from ctxpose.data import infer_inputs as inp
    from ctxpose.data.infer_outputs import InferTable, smooth_tracks, write_predictions
    from ctxpose.errors import OutputError
    from ctxpose.utils.io import check_writable_dir

    kind = boxes_source(request)
    sources = inp.find_sources(request.inputs)
    camera_K = camera_dist = None
    if request.camera_file is not None:
        camera_K, camera_dist = inp.read_camera_file(request.camera_file)
    detections = inp.read_detections(request.detections) if kind == "--boxes" else None
    detector = None
    if kind == "--detector":
        from ctxpose.engine.detector import load_person_detector

        detector = load_person_detector(request.detector, request.detector_weights)
    hws = [inp.source_hw(s) for s in sources]
    intrs = [Intrinsics.choose(hw, camera_K, camera_dist, request.focal, request.fov,
                               str(request.camera_file or "")) for hw in hws]
    if request.box is not None:
        for s, hw in zip(sources, hws, strict=True):
            inp.check_box_in_image(request.box, hw, f"--box for {s.path}")
    try:
        check_writable_dir(request.out)
    except OSError as e:
        raise OutputError(f"{request.out}: cannot write ({e})") from None
    est = estimator if isinstance(estimator, PoseEstimator) else estimator()
    n_videos = sum(s.kind == "video" for s in sources)
    R = upright_rotation(options.pitch)
    table = InferTable(est.skeleton.num_joints)
    summary = InferSummary(request.out, [str(s.path) for s in sources],
                           cameras=[f"{s.path}: {i.assumption}; K = {np.round(i.K, 2).tolist()}"
                                    for s, i in zip(sources, intrs, strict=True)])
    start = time.perf_counter()
    finished: list[int] = []

    def write(interrupted: bool = False) -> None:
        data = table.arrays()
        if request.smooth is not None and len(data["frame"]):
            table.smooth = list(smooth_tracks(data["keypoints_3d"], data["source"], data["track_id"],
                                              data["frame"], request.smooth))
        info = {"sources": summary.sources, "finished_sources": finished, "interrupted": interrupted,
                "cameras": summary.cameras, "joint_names": list(est.skeleton.names), "units": "mm, px, s",
                "frame": "camera: x right, y down, z forward",
                "root_method": options.root_method, "pitch_deg": options.pitch, "min_score": request.min_score,
                "boxes": kind, "smooth_sigma_frames": request.smooth, **(meta or {})}
        try:
            write_predictions(request.out, table, info)
        except OSError as e:
            raise OutputError(f"{e.filename or request.out}: cannot write ({e.strerror or e})") from None

    def run_chunk(si: int, chunk: list[tuple[int, float, np.ndarray]], tracker: inp.IoUTracker | None,
                  renderer: Any) -> None:
        src, intr = sources[si], intrs[si]
        boxes, scores = [], []
        for index, _, frame in chunk:
            if request.box is not None:
                dets = [inp.Detection(request.box, 1.0)]
            elif detector is not None:
                dets = detector(frame)
            else:
                dets = detections.for_frame(src, index, n_videos)  # type: ignore[union-attr]
            dets = [d for d in dets if d.score >= request.min_score]
            boxes.append([d.box for d in dets])
            scores.append([d.score for d in dets])
        people = estimate_poses(est, [c[2] for c in chunk], boxes, intr, options, scores)
        for (index, t, frame), persons in zip(chunk, people, strict=True):
            ids = (tracker.update([p.box for p in persons], index) if tracker is not None
                   else list(range(summary.people, summary.people + len(persons))))
            rows = []
            for p, tid in zip(persons, ids, strict=True):
                p.track_id = tid
                rows.append({"track_id": tid, "box": p.box, "score": p.score, "keypoints_3d": p.keypoints_3d,
                             "keypoints_3d_relative": p.keypoints_3d_relative, "keypoints_2d": p.keypoints_2d,
                             "root": p.root, "root_method": p.root_method, "passes": p.passes, "K": intr.K,
                             "dist": intr.dist, "world_to_camera": R})
            table.add_frame(si, index, t, rows)
            summary.frames += 1
            summary.people += len(persons)
            summary.empty_frames += not persons
            if renderer is not None:
                renderer.add(frame, persons, index)

    try:
        for si, src in enumerate(sources):
            total = len(src.images) if src.kind == "images" else inp.open_video_frame_count(src.path)
            tracker = inp.IoUTracker() if src.kind == "video" else None
            renderer = None
            if request.render:
                from ctxpose.viz.infer import InferRenderer

                fps = inp.open_video(src.path)[1].fps if src.kind == "video" else 25.0
                renderer = InferRenderer(request.out, src, est.skeleton, intrs[si], R, fps or 25.0)
            chunk: list[tuple[int, float, np.ndarray]] = []
            done = 0
            try:
                for item in inp.iter_frames(src):
                    chunk.append(item)
                    if len(chunk) == request.frames_per_batch:
                        run_chunk(si, chunk, tracker, renderer)
                        done += len(chunk)
                        chunk = []
                        if progress is not None:
                            progress(src.name, done, total, time.perf_counter() - start)
                if chunk:
                    run_chunk(si, chunk, tracker, renderer)
                    done += len(chunk)
                    if progress is not None:
                        progress(src.name, done, total, time.perf_counter() - start)
            except BaseException:
                if renderer is not None:
                    renderer.abort()
                raise
            if renderer is not None:
                summary.rendered += renderer.close()
            finished.append(si)
            write()
    except (KeyboardInterrupt, Stopped):
        summary.interrupted = True
        write(interrupted=True)
        raise
    finally:
        summary.seconds = time.perf_counter() - start
    return summary
