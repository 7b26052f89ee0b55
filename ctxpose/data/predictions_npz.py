"""The predictions file (``predictions.npz``): its declared fields, the one writer and the one loader.

Written by ``ctxpose eval`` (:func:`ctxpose.engine.evaluator.save_eval`) and by ``ctxpose fetch-weights
--labels`` (the released root estimates keyed by sample ids); read by ``ctxpose visualize predictions``, the
root estimates of a dataset (``*.pred_results_path``, ``--root-estimates``) and ``ctxpose export-3dhp``. A
plain ``np.savez`` archive, no pickles. Every array is declared in :data:`FIELDS`: N rows (one per sample),
J joints, V views; each reader says which fields it needs. Declared, per row:

    index            (N,) int64         dataset sample index
    subject_idx      (N,) int64         into subject_names (3DHP: the sequence, TS1..TS6)
    action_idx       (N,) int64         into action_names (3DHP: the activity)
    trial            (N,) int64         1 or 2 (3DHP: 0)
    camera_idx       (N,) int64         into camera_names
    frame            (N,) int64         0-based frame of the sequence
    camera_indices   (N, V) int64       the cameras of the V views each prediction saw (V > 1: a multi-view
                                        estimate, which ``pred_results_path`` serves to every camera of its frame)
    sequence         (N,) str           "TS1".."TS6" (an alternative to subject_idx for ``export-3dhp``)
    keypoints_3d     (N, J, 3) float32  predicted joints, world mm (3DHP: the test camera's frame)
    keypoints_3d_gt  (N, J, 3) float32  ground truth, same frame
    validity         (N, J) float32     joint weights of the ground truth
    proj_matrices    (N, 3, 4) float32  first view, world mm -> crop px
    image_paths      (N,) str           first-view crop, relative to dataset_root (or absolute)

and once per file:

    subject_names, action_names, camera_names  (K,) str
    skeleton         () str             joint order (``ctxpose.skeleton``)
    image_shape      (2,) int64         network input (H, W) that proj_matrices refers to
    dataset_root     () str             the processed folder at evaluation time
    source           () str             where the estimates come from (keyed released results)

``ctxpose infer`` writes the other kind of predictions file, declared in :data:`INFER_FIELDS` and marked by its
``format`` array (:data:`INFER_FORMAT`; eval's files have none): N rows, one per (frame, person), F rows, one per
frame (empty frames included), and a JSON ``meta``. ``ctxpose infer --calibration`` writes a third kind, declared
in :data:`MULTIVIEW_FIELDS` and marked :data:`MULTIVIEW_FORMAT`: N rows, one per frame with a person, F rows, V
views and the rig's cameras. All kinds are written by :func:`save_predictions` and read by
:func:`load_predictions`, each checked against its own table (``kind``: "eval", "infer" or "infer_multiview").

A new field is one more :class:`Field` in :data:`SCHEMAS`' table of its kind: :func:`save_predictions`
refuses undeclared arrays, so a writer cannot add one silently.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ctxpose.errors import DataError
from ctxpose.utils.io import atomic_path, load_npz


@dataclass(frozen=True)
class Field:
    """One declared array.

    Attributes:
        dtype: what :func:`save_predictions` writes ("str" for unicode strings of any length).
        shape: the array's shape: "N" rows, "J" joints, "K" names, "F" frames (infer), or a number.
        doc: its meaning and unit.
    """

    dtype: str
    shape: tuple[str | int, ...]
    doc: str

    @property
    def kind(self) -> str:
        """The numpy dtype kind a loaded array must have ("i", "f" or "U")."""
        return "U" if self.dtype == "str" else np.dtype(self.dtype).kind


_IDS = "int64"
#: every array a predictions file may hold
FIELDS: dict[str, Field] = {
    "index": Field(_IDS, ("N",), "dataset sample index"),
    "subject_idx": Field(_IDS, ("N",), "index into subject_names"),
    "action_idx": Field(_IDS, ("N",), "index into action_names"),
    "trial": Field(_IDS, ("N",), "trial of the action"),
    "camera_idx": Field(_IDS, ("N",), "index into camera_names"),
    "frame": Field(_IDS, ("N",), "0-based frame of the sequence"),
    "camera_indices": Field(_IDS, ("N", "V"), "cameras of the views each prediction saw"),
    "sequence": Field("str", ("N",), "MPI-INF-3DHP test sequence, TS1..TS6"),
    "keypoints_3d": Field("float32", ("N", "J", 3), "predicted joints, world mm"),
    "keypoints_3d_gt": Field("float32", ("N", "J", 3), "ground-truth joints, world mm"),
    "validity": Field("float32", ("N", "J"), "joint weights of the ground truth"),
    "proj_matrices": Field("float32", ("N", 3, 4), "first view's projection, world mm -> crop px"),
    "image_paths": Field("str", ("N",), "first-view crop, relative to dataset_root"),
    "subject_names": Field("str", ("K",), "subject (3DHP: sequence) names"),
    "action_names": Field("str", ("K",), "action (3DHP: activity) names"),
    "camera_names": Field("str", ("K",), "camera names"),
    "skeleton": Field("str", (), "joint order"),
    "image_shape": Field(_IDS, (2,), "network input (H, W) the projections refer to"),
    "dataset_root": Field("str", (), "processed folder at evaluation time"),
    "source": Field("str", (), "where the estimates come from"),
}
#: the marker (``format`` array) of an infer predictions file
INFER_FORMAT = "ctxpose.infer/1"
#: ``ctxpose infer``'s file: N rows, one per (frame, person); F rows, one per frame
INFER_FIELDS: dict[str, Field] = {
    "format": Field("str", (), f"what the file holds: {INFER_FORMAT!r}, infer's per-(frame, person) table"),
    "source": Field("int32", ("N",), "index into meta['sources']"),
    "frame": Field("int32", ("N",), "frame index in its source (image index for a set of images)"),
    "time": Field("float64", ("N",), "seconds from the video's start (0 for images)"),
    "track_id": Field("int32", ("N",), "person id, kept across a video's frames by IoU tracking"),
    "box": Field("float32", ("N", 4), "x, y, w, h px in the input image"),
    "score": Field("float32", ("N",), "detector score"),
    "keypoints_3d": Field("float32", ("N", "J", 3), "absolute joints, camera frame (x right, y down, z forward), mm"),
    "keypoints_3d_relative": Field("float32", ("N", "J", 3), "joints minus the pelvis, mm"),
    "keypoints_2d": Field("float32", ("N", "J", 2), "keypoints_3d projected into the input image (its distortion), "
                                                    "px"),
    "root": Field("float32", ("N", 3), "cuboid centre the network ran with, camera frame mm"),
    "root_method": Field("str", ("N",), "how the root was found (box, rootnet, bones, network, depth, given)"),
    "passes": Field("int32", ("N",), "network passes run for this person"),
    "K": Field("float32", ("N", 3, 3), "camera intrinsics used, px"),
    "dist": Field("float32", ("N", 5), "lens distortion used (k1, k2, p1, p2, k3)"),
    "world_to_camera": Field("float32", ("N", 3, 3), "rotation of the upright world the network used "
                                                      "(x_cam = R x_world)"),
    "keypoints_3d_smooth": Field("float32", ("N", "J", 3), "with --smooth: keypoints_3d smoothed over time per "
                                                            "track, mm (raw kept)"),
    "frame_source": Field("int32", ("F",), "every frame: index into meta['sources']"),
    "frame_index": Field("int32", ("F",), "every frame: its index in its source"),
    "frame_time": Field("float64", ("F",), "every frame: seconds from the video's start"),
    "frame_people": Field("int32", ("F",), "every frame: its rows (people), in row order"),
    "meta": Field("str", (), "JSON: sources, cameras, joint names, options, config, checkpoint"),
}
#: the marker (``format`` array) of a multi-view infer predictions file (``ctxpose infer --calibration``)
MULTIVIEW_FORMAT = "ctxpose.infer-multiview/1"
#: ``ctxpose infer --calibration``'s file: N rows, one per frame with a person; F rows, one per frame; V views
MULTIVIEW_FIELDS: dict[str, Field] = {
    "format": Field("str", (), f"what the file holds: {MULTIVIEW_FORMAT!r}, multi-view infer's per-frame table"),
    "frame": Field("int32", ("N",), "frame index (the same in every view: synchronized)"),
    "time": Field("float64", ("N",), "seconds from the first view's start (0 for images)"),
    "keypoints_3d": Field("float32", ("N", "J", 3), "joints in the calibration's world frame, mm"),
    "keypoints_3d_relative": Field("float32", ("N", "J", 3), "joints minus the pelvis, mm"),
    "keypoints_2d": Field("float32", ("N", "V", "J", 2), "keypoints_3d projected into each view's image (its "
                                                         "distortion), px"),
    "boxes": Field("float32", ("N", "V", 4), "x, y, w, h px of the person box used in each view (NaN: none)"),
    "scores": Field("float32", ("N", "V"), "detector score of each view's box (NaN: none)"),
    "views_used": Field("bool", ("N", "V"), "the views the network ran on for this frame"),
    "root": Field("float32", ("N", 3), "cuboid centre of the volumetric models, world mm (NaN for triangulation)"),
    "passes": Field("int32", ("N",), "network passes run for this frame"),
    "frame_index": Field("int32", ("F",), "every frame: its index"),
    "frame_time": Field("float64", ("F",), "every frame: seconds from the first view's start"),
    "frame_people": Field("int32", ("F",), "every frame: its rows (0 or 1 person)"),
    "camera_K": Field("float64", ("V", 3, 3), "intrinsics of each view, px"),
    "camera_dist": Field("float64", ("V", 5), "lens distortion of each view (k1, k2, p1, p2, k3)"),
    "camera_R": Field("float64", ("V", 3, 3), "rotation of each view, world -> camera"),
    "camera_t": Field("float64", ("V", 3), "translation of each view, world -> camera, mm"),
    "meta": Field("str", (), "JSON: sources, camera names, view lengths, architecture, joint names, config, "
                             "checkpoint"),
}
#: the declared fields of each kind of predictions file
SCHEMAS: dict[str, dict[str, Field]] = {"eval": FIELDS, "infer": INFER_FIELDS, "infer_multiview": MULTIVIEW_FIELDS}
#: the ``format`` marker of each kind but eval (whose files have none)
FORMATS: dict[str, str] = {"infer": INFER_FORMAT, "infer_multiview": MULTIVIEW_FORMAT}
#: each kind in words, and the command that writes it
_WHAT = {"eval": ("an eval predictions file (per dataset sample)", "`ctxpose eval`"),
         "infer": (f"an infer predictions file (format {INFER_FORMAT})", "`ctxpose infer`"),
         "infer_multiview": (f"a multi-view infer predictions file (format {MULTIVIEW_FORMAT})",
                             "`ctxpose infer --calibration`")}
#: the id columns that name a sample (with the *_names arrays)
ID_FIELDS = ("subject_idx", "action_idx", "trial", "camera_idx", "frame")
NAME_FIELDS = ("subject_names", "action_names", "camera_names")


def kind_of(arrays: Mapping[str, np.ndarray]) -> str:
    """The kind of a predictions file from its ``format`` marker (:data:`FORMATS`), or "eval" (no marker)."""
    marker = str(np.asarray(arrays["format"])) if "format" in arrays else None
    return next((kind for kind, f in FORMATS.items() if f == marker), "eval")


def check_predictions(arrays: Mapping[str, np.ndarray], source: str | Path,
                      required: Iterable[str] = (), kind: str | None = None) -> None:
    """Check declared fields for dtype kind and shape (N from the first per-row field, J from keypoints_3d, F from
    the first per-frame field), against the table of ``kind`` (default: the arrays' own, :func:`kind_of`).

    Raises:
        DataError: ``source: key ...`` for another kind of file than ``kind``, a missing required field, a wrong
            dtype or shape, an index into the names out of range, or non-finite predicted joints (eval files).
    """
    found = kind_of(arrays)
    if kind is not None and found != kind:
        raise DataError(f"{source}: {_WHAT[found][0]}, expected {_WHAT[kind][0]}")
    fields = SCHEMAS[found]
    missing = [k for k in required if k not in arrays]
    if missing:
        raise DataError(f"{source}: no {', '.join(map(repr, missing))}; expected a predictions file with "
                        f"{', '.join(required)} ({_WHAT[found][1]} writes them)")

    def first_len(axis: str) -> int:
        keys = [k for k, f in fields.items() if f.shape[:1] == (axis,) and k in arrays]
        return len(arrays[keys[0]]) if keys else 0

    n, frames, views = first_len("N"), first_len("F"), first_len("V")
    joints = next((arrays[k].shape[1] for k in ("keypoints_3d", "keypoints_3d_gt", "validity")
                   if k in arrays and arrays[k].ndim >= 2), None)
    for key, f in fields.items():
        if key not in arrays:
            continue
        a = np.asarray(arrays[key])
        if f.shape[:1] in (("N",), ("F",)) and {"N": n, "F": frames}[f.shape[0]] == 0 and a.size == 0:
            continue  # no rows: any empty array will do
        if a.dtype.kind != f.kind and not (f.kind in "fi" and a.dtype.kind in "iu"):
            raise DataError(f"{source}: {key} has dtype {a.dtype}, expected {f.dtype} ({f.doc})")
        # V: from the per-view fields (the multi-view kind's cameras), else each array's own (eval's)
        sizes = {"N": n, "F": frames, "J": joints, "K": len(a) if a.ndim else None,
                 "V": views or (a.shape[1] if a.ndim == 2 else None)}
        expected = tuple(sizes.get(d, d) if isinstance(d, str) else d for d in f.shape)
        if a.shape != expected:
            shown = "(" + ", ".join(str(d) for d in f.shape) + ("," if len(f.shape) == 1 else "") + ")"
            raise DataError(f"{source}: {key} has shape {a.shape}, expected {expected} {shown} ({f.doc})")
    if found != "eval":
        if "frame_people" in arrays and int(np.asarray(arrays["frame_people"]).sum()) != n:
            raise DataError(f"{source}: frame_people sums to {int(np.asarray(arrays['frame_people']).sum())}, "
                            f"expected {n} (the per-person rows)")
        return
    for idx, names in zip(("subject_idx", "action_idx", "camera_idx"), NAME_FIELDS, strict=True):
        if idx in arrays and names in arrays and n:
            i = np.asarray(arrays[idx])
            if i.min() < 0 or i.max() >= len(arrays[names]):
                raise DataError(f"{source}: {idx} outside 0..{len(arrays[names]) - 1} (the entries of {names})")
    if "keypoints_3d" in arrays and not np.all(np.isfinite(arrays["keypoints_3d"])):
        raise DataError(f"{source}: keypoints_3d contains NaN or inf")


def save_predictions(path: str | Path, arrays: Mapping[str, np.ndarray], kind: str = "eval") -> Path:
    """Check ``arrays`` against the fields of ``kind`` (:data:`SCHEMAS`: :data:`FIELDS` for "eval",
    :data:`INFER_FIELDS` for "infer", :data:`MULTIVIEW_FIELDS` for "infer_multiview"; the ``format`` marker of
    the last two is added), cast them to the declared dtypes and write them atomically (temp
    file, then rename; no pickles). Returns the path.

    Raises:
        ValueError: an unknown kind, an undeclared array (declare it first) or one that breaks the schema.
    """
    if kind not in SCHEMAS:
        raise ValueError(f"kind {kind!r}: expected one of {sorted(SCHEMAS)}")
    fields = SCHEMAS[kind]
    if kind in FORMATS:
        arrays = {**arrays, "format": np.array(FORMATS[kind])}
    unknown = sorted(set(arrays) - set(fields))
    if unknown:
        raise ValueError(f"undeclared predictions fields {unknown} (kind {kind}); declare them in "
                         "ctxpose.data.predictions_npz")
    out = {}
    for key, value in arrays.items():
        dtype = fields[key].dtype
        out[key] = np.asarray(value).astype(str) if dtype == "str" else np.asarray(value, dtype=dtype)
    try:
        check_predictions(out, path, kind=kind)
    except DataError as e:
        raise ValueError(str(e)) from None
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **out)
    return path


def load_predictions(path: str | Path, required: Iterable[str] = (), kind: str = "eval") -> dict[str, np.ndarray]:
    """Read a predictions file (no pickles) and check it (:func:`check_predictions`).

    Args:
        path: the ``.npz``.
        required: fields the caller needs.
        kind: "eval" (``ctxpose eval``'s, the default), "infer" (``ctxpose infer``'s) or "infer_multiview"
            (``ctxpose infer --calibration``'s); the other kinds are refused.

    Returns:
        Every array of the file; undeclared ones (another format's, e.g. the released results' ``indexes``)
        are returned unchecked.

    Raises:
        DataError: missing or unreadable file, another kind of file, a missing required field, or a field that
            breaks the schema, naming the file and the field.
    """
    required = tuple(required)
    arrays = load_npz(path, "predictions file")
    check_predictions(arrays, path, required, kind)
    return arrays
