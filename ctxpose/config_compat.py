"""Read the original ContextPose / learnable-triangulation experiment YAML unchanged.

The original files (``experiments/human36m/{train,eval}/human36m_vol_softmax_single.yaml``) have a
``title``/``kind``/``azureroot`` header and ``model``/``loss``/``dataset``/``train``/``val`` sections.
Most keys keep their meaning and name; this module holds the few renames, the keys we ignore (with
the reason), the keys whose only supported value is the original's own (anything else is refused with the
reason), and the ``azureroot`` prefixing of ``data/...`` paths the original applies at start-up.
"""

from __future__ import annotations

import copy
import difflib
import posixpath
from collections.abc import Mapping
from typing import Any

from ctxpose.errors import ConfigError

#: original key path -> our key path
RENAMED = {
    "vis_freq": "train.vis_freq",
    "vis_n_elements": "train.vis_n_elements",
    "dataset.transfer_cmu_to_human36m": "model.transfer_cmu_to_human36m",
    "train.limb_length_path": "dataset.limb_length_path",
}

#: original key paths with no effect here, and why
IGNORED = {
    "azureroot": "applied to data/ paths while converting",
    "batch_output": "debug printing in the original",
    "model.backbone.name": "derived from model.backbone.num_layers (checked to agree)",
    "model.backbone.num_joints": "derived from the skeleton (checked to agree)",
    "model.heatmap_shape": "the volumetric model's heatmaps are always a quarter of model.image_shape (the "
                           "backbone's output size)",
    "model.heatmap_softmax": "read only by the original's algebraic model",
    "model.heatmap_multiplier": "read only by the original's algebraic model",
    "dataset.data_format": "unused by the original",
    "dataset.extra_root": "unused by the original (the extra files are named by their own paths)",
    "dataset.train_dataset": "dataset class name; ours is chosen from the processed folder",
    "dataset.val_dataset": "dataset class name; ours is chosen from the processed folder",
    "train.n_iters_per_epoch": "unused by the original (n_objects_per_epoch rules)",
    "val.limb_length_path": "the prior is the training one (dataset.limb_length_path)",
    "val.n_objects_per_epoch": "validation always runs the whole split",
}

#: original key paths that choose something only one choice of which exists here: original key -> (the
#: accepted values (the original's setting), why nothing else is). Accepted values are ignored.
ONLY = {
    "kind": (("human36m",), "the training data is Human3.6M (dataset.root), the MPI-INF-3DHP test set is "
                            "`ctxpose eval --dataset 3dhp`; CMU Panoptic is not supported"),
    "dataset.kind": (("human36m",), "the training data is Human3.6M (dataset.root); CMU Panoptic is not supported"),
    "model.name": (("vol",), "the volumetric model (ContextPose) is the model here"),
    "model.kind": (("mpii",), "the MPII/Human3.6M joint-order family with z up (the skeleton is model.skeleton); "
                              "coco (CMU Panoptic) is not supported"),
    "train.erase": ((False,), "random erasing is not implemented (off in the paper setting)"),
    "val.erase": ((False,), "random erasing is not implemented (off in the paper setting)"),
}

def _only_refusal(path: str, value: Any) -> list[str]:
    """The problem with an :data:`ONLY` key's value (none for the original's own value)."""
    accepted, reason = ONLY[path]
    if value in accepted and type(value) is type(accepted[0]):
        return []
    return [f"{path}: {value!r}, only {' or '.join(map(repr, accepted))} is supported: {reason}"]


def is_original_config(data: Any) -> bool:
    """True for a YAML mapping in the original's layout (it has ``azureroot`` or ``model.name``)."""
    if not isinstance(data, Mapping):
        return False
    model = data.get("model")
    return "azureroot" in data or (isinstance(model, Mapping) and "name" in model and "backbone" in model
                                   and "skeleton" not in model)


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, path + "."))
        else:
            out[path] = value
    return out


def _set(tree: dict[str, Any], path: str, value: Any) -> None:
    parts = path.split(".")
    for part in parts[:-1]:
        tree = tree.setdefault(part, {})
    tree[parts[-1]] = value


def convert_original_config(data: Mapping[str, Any], known_paths: set[str]) -> dict[str, Any]:
    """Map an original experiment YAML mapping onto our config layout.

    Args:
        data: the parsed original YAML.
        known_paths: our schema's leaf key paths (:func:`ctxpose.config.leaf_paths`).

    Returns:
        A nested mapping for :func:`ctxpose.config.config_from_dict`.

    Raises:
        ConfigError: a key the original does not have either, a value of :data:`ONLY` other than the
            original's, or inconsistent backbone settings (every problem in one line).
    """
    flat = _flatten(copy.deepcopy(dict(data)))
    azureroot = flat.get("azureroot") or ""
    out: dict[str, Any] = {}
    unknown = []
    for path, value in flat.items():
        if path in ONLY:
            unknown.extend(_only_refusal(path, value))
            continue
        if path in IGNORED:
            continue
        target = RENAMED.get(path, path)
        if target not in known_paths:
            candidates = sorted(known_paths | set(RENAMED) | set(IGNORED) | set(ONLY))
            close = difflib.get_close_matches(path, candidates, n=1, cutoff=0.75)
            hint = f", did you mean {close[0]}?" if close else ""
            unknown.append(f"{path[:80]}: unknown key in original ContextPose config{hint}")
            continue
        if azureroot and isinstance(value, str) and value.startswith("data/"):
            value = posixpath.join(azureroot, value)
        _set(out, target, value)

    if unknown:
        raise ConfigError("; ".join(unknown))
    backbone = data.get("model", {}).get("backbone", {}) if isinstance(data.get("model"), Mapping) else {}
    name, layers = backbone.get("name"), backbone.get("num_layers")
    if name is not None and layers is not None and name != f"resnet{layers}":
        raise ConfigError(f"model.backbone.name: {name!r} disagrees with model.backbone.num_layers={layers}")
    joints = backbone.get("num_joints")
    channels = backbone.get("num_final_layer_channel", joints)
    if joints is not None and channels != joints:
        raise ConfigError(
            f"model.backbone.num_joints: {joints} disagrees with num_final_layer_channel={channels}"
        )
    return out


# --------------------------------------------------------------------------- learnable-triangulation's YAMLs

#: learnable-triangulation's ``model.name`` -> our ``model.architecture``
TRIANGULATION_ARCHITECTURES = {"alg": "algebraic", "ransac": "ransac", "vol": "volumetric"}

#: learnable-triangulation key path -> our key path (``{split}`` stands for train and val)
TRIANGULATION_RENAMED = {
    "title": "title",
    "vis_freq": "train.vis_freq",
    "vis_n_elements": "train.vis_n_elements",
    "image_shape": "model.image_shape",
    "opt.criterion": "loss.criterion",
    "opt.mse_smooth_threshold": "loss.mse_smooth_threshold",
    "opt.use_volumetric_ce_loss": "loss.use_volumetric_ce_loss",
    "opt.volumetric_ce_loss_weight": "loss.volumetric_ce_loss_weight",
    "opt.scale_keypoints_3d": "loss.scale_keypoints_3d",
    "opt.grad_clip": "loss.grad_clip",
    "opt.n_objects_per_epoch": "train.n_objects_per_epoch",
    "opt.n_epochs": "train.n_epochs",
    "opt.batch_size": "train.batch_size",
    "opt.val_batch_size": "val.batch_size",
    "opt.lr": "train.backbone_lr",
    "opt.process_features_lr": "train.process_features_lr",
    "opt.volume_net_lr": "train.volume_net_lr",
    "model.init_weights": "model.init_weights",
    "model.checkpoint": "model.checkpoint",
    "model.volume_aggregation_method": "model.volume_net.volume_aggregation_method",
    "model.use_gt_pelvis": "model.volume_net.use_gt_pelvis",
    "model.cuboid_side": "model.volume_net.cuboid_size",
    "model.volume_size": "model.volume_net.volume_size",
    "model.volume_multiplier": "model.volume_net.volume_multiplier",
    "model.volume_softmax": "model.volume_net.volume_softmax",
    "model.use_confidences": "model.triangulation.use_confidences",
    "model.direct_optimization": "model.triangulation.direct_optimization",
    "model.transfer_cmu_to_human36m": "model.transfer_cmu_to_human36m",
    "model.backbone.style": "model.backbone.style",
    "model.backbone.init_weights": "model.backbone.init_weights",
    "model.backbone.checkpoint": "model.backbone.checkpoint",
    "model.backbone.num_layers": "model.backbone.num_layers",
    "dataset.train.labels_path": "dataset.train_labels_path",
    "dataset.val.labels_path": "dataset.val_labels_path",
    **{f"dataset.{s}.{k}": f"{s}.{k}" for s in ("train", "val")
       for k in ("pred_results_path", "with_damaged_actions", "undistort_images", "scale_bbox", "shuffle",
                 "randomize_n_views", "min_n_views", "max_n_views", "num_workers", "ignore_cameras", "crop")},
    "dataset.val.retain_every_n_frames_in_test": "val.retain_every_n_frames_in_test",
}

#: learnable-triangulation key paths with no setting here, and why
TRIANGULATION_IGNORED = {
    "model.name": "read as model.architecture (alg: algebraic, vol: volumetric, ransac: ransac)",
    "model.backbone.name": "derived from model.backbone.num_layers (checked to agree)",
    "model.backbone.num_joints": "derived from the skeleton (checked to agree)",
    "model.heatmap_softmax": "read by the original's algebraic model only (model.triangulation.heatmap_softmax there)",
    "model.heatmap_multiplier": "read by the original's algebraic model only (model.triangulation.heatmap_multiplier "
                                "there)",
    "dataset.train.h36m_root": "dataset.root (one for both splits; checked to agree)",
    "dataset.val.h36m_root": "dataset.root (one for both splits; checked to agree)",
    "opt.n_iters_per_epoch": "unused by the original (n_objects_per_epoch rules)",
}

#: the fewest views each model.architecture triangulates from: the original's ``min_n_views: null`` (it reads
#: the count only with ``randomize_n_views``) becomes this; ``max_n_views: null`` (every view) passes through
MIN_VIEWS = {"algebraic": 2, "ransac": 2, "volumetric": 1}


def is_triangulation_config(data: Any) -> bool:
    """True for a learnable-triangulation experiment YAML (an ``opt`` section and ``model.name``)."""
    model = data.get("model") if isinstance(data, Mapping) else None
    return isinstance(data.get("opt") if isinstance(data, Mapping) else None, Mapping) and isinstance(model, Mapping) \
        and "name" in model


def convert_triangulation_config(data: Mapping[str, Any], known_paths: set[str]) -> dict[str, Any]:
    """Map a karfly/learnable-triangulation-pytorch experiment YAML (``human36m_alg.yaml``,
    ``human36m_vol_softmax.yaml``, ``human36m_ransac.yaml``...) onto our config layout.

    Raises:
        ConfigError: an unknown key or model name, or settings that disagree (backbone name and depth, the two
        splits' data roots).
    """
    flat = _flatten(copy.deepcopy(dict(data)))
    name = flat.get("model.name")
    if name not in TRIANGULATION_ARCHITECTURES:
        raise ConfigError(f"model.name: {_show_value(name)}, expected one of {', '.join(TRIANGULATION_ARCHITECTURES)}")
    architecture = TRIANGULATION_ARCHITECTURES[name]
    out: dict[str, Any] = {"model": {"architecture": architecture}}
    unknown = []
    for path, value in flat.items():
        if architecture == "algebraic" and path in ("model.heatmap_softmax", "model.heatmap_multiplier"):
            _set(out, path.replace("model.", "model.triangulation."), value)
            continue
        if path in TRIANGULATION_IGNORED:
            continue
        if path in ONLY:  # kind, model.kind, dataset.kind: the one choice there is here
            unknown.extend(_only_refusal(path, value))
            continue
        target = TRIANGULATION_RENAMED.get(path)
        if target is None or target not in known_paths:
            candidates = sorted(set(TRIANGULATION_RENAMED) | set(TRIANGULATION_IGNORED))
            close = difflib.get_close_matches(path, candidates, n=1, cutoff=0.75)
            unknown.append(f"{path[:80]}: unknown key in a learnable-triangulation config"
                           + (f", did you mean {close[0]}?" if close else ""))
            continue
        if target.endswith(".min_n_views") and value is None:
            value = MIN_VIEWS[architecture]
        if target == "model.checkpoint" and value == "":
            value = None
        _set(out, target, value)
    if unknown:
        raise ConfigError("; ".join(unknown))
    roots = {flat[k] for k in ("dataset.train.h36m_root", "dataset.val.h36m_root") if k in flat}
    if len(roots) > 1:
        raise ConfigError(f"dataset.train.h36m_root and dataset.val.h36m_root differ ({sorted(roots)}); ctxpose reads "
                          "both splits from one dataset.root")
    if roots:
        _set(out, "dataset.root", roots.pop())
    layers, backbone = flat.get("model.backbone.num_layers"), flat.get("model.backbone.name")
    if backbone is not None and layers is not None and backbone != f"resnet{layers}":
        raise ConfigError(f"model.backbone.name: {backbone!r} disagrees with model.backbone.num_layers={layers}")
    joints = flat.get("model.backbone.num_joints")
    if joints is not None and joints != 17:
        raise ConfigError(f"model.backbone.num_joints: {joints}, expected 17 (ctxpose's Human3.6M skeleton)")
    if architecture != "contextpose":
        out.setdefault("loss", {}).setdefault("use_global_attention_loss", False)
        if architecture != "volumetric":
            out["loss"].setdefault("use_volumetric_ce_loss", False)
    return out


def _show_value(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:60] + "..."
