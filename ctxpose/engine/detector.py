"""The built-in person detector (optional extra ``ctxpose[detect]``): torchvision's Faster R-CNN with a
MobileNet-v3 FPN backbone, COCO class 1 (person). torchvision is imported only here and only when used. Its
weights: ``--detector-weights FILE``, or the registry's ``person-detector`` fetched into the data root by
``ctxpose fetch-weights person-detector`` (verified and pinned there)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from ctxpose.errors import ConfigError

#: the registry entry of the built-in detector's weights
WEIGHTS_ARTIFACT = "person-detector"
INSTALL_HINT = ("--detector builtin: needs torchvision (pip install 'ctxpose[detect]'); or pass --boxes FILE "
                "(a COCO results .json or .csv from any detector) or --box x,y,w,h")


def detector_weights(weights: Path | None, root: Path | None = None) -> Path:
    """The weights file of the built-in detector: ``weights`` if given, else the fetched
    :data:`WEIGHTS_ARTIFACT` under the data root (``root``, default ``$CTXPOSE_DATA`` or ``./data``).

    Raises:
        ConfigError: the given file, or the fetched one, is not there (one line saying what to run).
    """
    if weights is not None:
        if not Path(weights).is_file():
            raise ConfigError(f"--detector-weights {weights}: file not found (the COCO weights of "
                              "torchvision's fasterrcnn_mobilenet_v3_large_fpn)")
        return Path(weights)
    from ctxpose.weights.fetch import default_root
    from ctxpose.weights.registry import load_registry

    path = load_registry().get(WEIGHTS_ARTIFACT).path(root if root is not None else default_root())
    if not path.is_file():
        raise ConfigError(f"--detector builtin: no weights at {path}; run `ctxpose fetch-weights "
                          f"{WEIGHTS_ARTIFACT}` (or pass --detector-weights FILE)")
    return path


def load_person_detector(name: str | None, weights: Path | None) -> Callable[[np.ndarray], list]:
    """A function ``(H, W, 3) uint8 BGR frame -> [Detection]`` (boxes x, y, w, h px, COCO person scores).

    Raises:
        ConfigError: an unknown detector, torchvision missing, or no weights file (:func:`detector_weights`).
    """
    if name != "builtin":
        raise ConfigError(f"--detector {name}: expected builtin")
    try:
        from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_fpn
    except Exception:  # noqa: BLE001 - missing, or a wheel that cannot load beside this torch
        raise ConfigError(INSTALL_HINT) from None
    import torch

    from ctxpose.data.infer_inputs import Detection
    from ctxpose.utils.io import load_weights_only

    path = detector_weights(weights)
    model = fasterrcnn_mobilenet_v3_large_fpn(weights=None, weights_backbone=None, num_classes=91)
    model.load_state_dict(load_weights_only(path))
    model.eval()

    @torch.no_grad()
    def detect(frame: np.ndarray) -> list[Detection]:
        image = torch.from_numpy(np.ascontiguousarray(frame[:, :, ::-1])).permute(2, 0, 1).float() / 255.0
        out = model([image])[0]
        keep = out["labels"] == 1
        boxes, scores = out["boxes"][keep].numpy(), out["scores"][keep].numpy()
        return [Detection(np.array([b[0], b[1], b[2] - b[0], b[3] - b[1]], np.float64), float(s))
                for b, s in zip(boxes, scores, strict=True)]

    return detect
