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
            accepted, reason = ONLY[path]
            if value not in accepted or type(value) is not type(accepted[0]):
                unknown.append(f"{path}: {value!r}, only {' or '.join(map(repr, accepted))} is supported: {reason}")
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
