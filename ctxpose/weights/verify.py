"""Prove a file is what the registry says, with the project's own safe readers (nothing is executed).

* network / backbone: ``read_state_dict`` (``torch.load(weights_only=True)``), then the keys and shapes
  against the network of the artifact's ``model`` settings (any ``model.architecture``: ContextPose, the
  volumetric or the algebraic model), built on the meta device (no memory, no weights):
  ``load_checkpoint``'s strict rule (``module.`` prefix allowed) or ``load_backbone_checkpoint``'s (a final
  layer with another joint count is re-initialised, as the original).
* results: the restricted unpickler, fields, shapes, a permutation of indexes, the expected row count.
* limb-prior: ``load_limb_prior`` (datasets mean, std with one value per bone).
* detector: torchvision's COCO person detector weights, without torchvision: the sha256 starts with the
  registry's ``sha256_prefix`` (the hash prefix of the published file name), ``torch.load(weights_only=True)``
  gives a state dict of tensors only, with the detector's ``backbone.``, ``rpn.`` and ``roi_heads.`` parts and
  a box classifier over COCO's 91 categories (label 1, person, is what ``infer`` keeps).

Any kind with a ``sha256_prefix`` has that prefix checked first.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from ctxpose.config import config_from_dict
from ctxpose.data.predictions import read_released_results
from ctxpose.errors import CtxposeError
from ctxpose.models.build import (
    build_model,
    load_backbone_checkpoint,
    load_limb_prior,
    load_state_dict_strict,
    read_state_dict,
)
from ctxpose.skeleton import H36M_CONTEXTPOSE, LimbPrior, get_skeleton
from ctxpose.weights.registry import Artifact

#: parts of torchvision's detection models (GeneralizedRCNN: backbone, rpn, roi_heads)
DETECTOR_PARTS = ("backbone.", "rpn.", "roi_heads.")
#: COCO's category count in torchvision's detection heads (index 0 background, 1 person)
COCO_CLASSES = 91
DETECTOR_CLASSIFIER = "roi_heads.box_predictor.cls_score.weight"


class VerificationError(CtxposeError):
    """A file is not what the registry says it is."""


def meta_model(model_settings: dict) -> nn.Module:
    """The network of a config ``model`` section, on the meta device (shapes only)."""
    architecture = model_settings.get("architecture", "contextpose")
    # the losses a network without attention (or without a volume) cannot have, off: the config is then valid
    loss = {} if architecture == "contextpose" else {"use_global_attention_loss": False,
                                                      "use_volumetric_ce_loss": architecture == "volumetric"}
    views = {"min_n_views": 2, "max_n_views": None}  # the triangulation models' fewest views; no shape depends on it
    splits = {s: views for s in ("train", "val")} if architecture in ("algebraic", "ransac") else {}
    config = config_from_dict({"model": model_settings, "loss": loss, **splits})
    bones = get_skeleton(config.model.skeleton).num_bones
    prior = LimbPrior(torch.full((bones,), 300.0), torch.full((bones,), 30.0))  # CPU: read at construction
    with torch.device("meta"):
        return build_model(config, prior)


def verify_file(artifact: Artifact, path: Path, label: str | None = None) -> str:
    """Check ``path`` against ``artifact``'s kind; returns a short description of what was found.

    Args:
        artifact: registry entry.
        path: the file (possibly a temporary name).
        label: the name to use in messages instead of ``path`` (the destination).

    Raises:
        VerificationError: one line naming ``label`` and what did not fit.
    """
    label = label or str(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "copying into a meta parameter is a no-op"
            return _verify(artifact, Path(path), label)
    except CtxposeError as e:
        message = str(e).replace(str(path), label)
        raise VerificationError(f"{label}: not the {artifact.name} file the registry describes: {message}") from None


def _verify(artifact: Artifact, path: Path, label: str) -> str:
    if artifact.sha256_prefix:
        import hashlib

        h = hashlib.sha256()
        with open(path, "rb") as f:
            while block := f.read(1 << 20):
                h.update(block)
        if not h.hexdigest().startswith(artifact.sha256_prefix):
            raise VerificationError(f"sha256 {h.hexdigest()} does not start with {artifact.sha256_prefix}, the "
                                    "hash prefix in the published file's name")
    if artifact.kind == "detector":
        return _verify_detector(path)
    if artifact.kind in ("network", "backbone"):
        model = meta_model(artifact.model)
        if artifact.kind == "network":
            state = read_state_dict(path)
            load_state_dict_strict(model, state, label)
            return f"{len(state)} tensors fit the network"
        load_backbone_checkpoint(model, path)
        return "fits the pose-ResNet backbone"
    if artifact.kind == "results":
        kp, _ = read_released_results(path, artifact.rows)
        return f"{len(kp):,} poses"
    if artifact.kind == "limb-prior":
        prior = load_limb_prior(path, H36M_CONTEXTPOSE)  # the released file: one value per ContextPose bone
        return f"{prior.num_bones} bones"
    raise VerificationError(f"{label}: unknown kind {artifact.kind!r}")


def _verify_detector(path: Path) -> str:
    """torchvision's detection weights, read without torchvision (``torch.load(weights_only=True)``)."""
    from ctxpose.utils.io import load_weights_only

    state = load_weights_only(path)
    if not isinstance(state, dict) or not state:
        raise VerificationError(f"a {type(state).__name__}, expected a state dict (parameter name -> tensor)")
    others = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if others:
        raise VerificationError(f"{len(others)} entries are not tensors (first {others[0]!r}); expected a state dict")
    stray = [k for k in state if not str(k).startswith(DETECTOR_PARTS)]
    if stray:
        raise VerificationError(f"key {stray[0]!r} is not part of a detector (expected keys under "
                                f"{', '.join(DETECTOR_PARTS)})")
    absent = [p for p in DETECTOR_PARTS if not any(str(k).startswith(p) for k in state)]
    if absent:
        raise VerificationError(f"no {', '.join(absent)} keys; expected the detector's {', '.join(DETECTOR_PARTS)}")
    classifier = state.get(DETECTOR_CLASSIFIER)
    if classifier is None or classifier.ndim != 2 or classifier.shape[0] != COCO_CLASSES:
        shape = None if classifier is None else tuple(classifier.shape)
        raise VerificationError(f"{DETECTOR_CLASSIFIER} has shape {shape}, expected ({COCO_CLASSES}, features): "
                                "COCO's categories, person = 1")
    return f"{len(state)} tensors of a COCO detector"
