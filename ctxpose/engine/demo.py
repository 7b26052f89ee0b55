"""The demo pipeline: synthetic Human3.6M -> preprocess -> the tiny setting (its overlay: ``ctxpose.viz``).

Everything it needs is in the package (the config below is the tiny CPU setting of ``configs/tiny_cpu.yaml``
with the demo's schedule), so it works from a plain ``pip install``. ``ctxpose demo`` and
``benchmarks/learn_synthetic.py`` call it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ctxpose.config import ExperimentConfig, config_from_dict

#: The demo setting: ResNet-18 at 64 px, 16^3 volume, ground-truth pelvis, Adam at 1e-3.
DEMO_CONFIG: dict[str, Any] = {
    "title": "demo",
    "model": {
        "image_shape": [64, 64], "heatmap_shape": [16, 16], "init_weights": False,
        "backbone": {"num_layers": 18, "init_weights": False},
        "volume_net": {"use_gt_pelvis": True, "cuboid_size": 2500.0, "volume_size": 16, "att_channels": 17},
    },
    "loss": {"criterion": "MAE", "scale_keypoints_3d": 0.1, "use_volumetric_ce_loss": True,
             "volumetric_ce_loss_weight": 0.01, "use_global_attention_loss": True,
             "global_attention_loss_weight": 1e6},
    "dataset": {"train_subjects": ["S1"], "val_subjects": ["S9"]},
    "train": {"batch_size": 8, "n_objects_per_epoch": 480, "n_epochs": 10, "backbone_lr": 1e-3,
              "process_features_lr": 1e-3, "volume_net_lr": 1e-3, "backbone_lr_step": [8],
              "volume_net_lr_step": [8], "num_workers": 0, "vis_freq": 60, "vis_n_elements": 4},
    "val": {"batch_size": 16, "num_workers": 0, "retain_every_n_frames_in_test": 4},
}
DEMO_ACTIONS = ("Walking-1", "Walking-2", "TakingPhoto-1", "TakingPhoto-2")


def demo_config(processed: Path, overrides: list[str] | tuple[str, ...] = ()) -> ExperimentConfig:
    """The demo experiment reading ``processed`` (plus ``key=value`` overrides)."""
    from ctxpose.config import apply_overrides

    data = json.loads(json.dumps(DEMO_CONFIG))
    data["dataset"].update({"root": str(processed),
                            "limb_length_path": str(processed / "mean_and_std_limb_length.h5")})
    return apply_overrides(config_from_dict(data), list(overrides))


def prepare_demo_data(out: Path, frames: int = 60, image_size: int = 64) -> Path:
    """Synthesize the raw dataset (S1 train, S9 val) and preprocess it; returns the processed folder."""
    from ctxpose.data.h36m.preprocess import PreprocessOptions, preprocess_h36m
    from ctxpose.data.h36m.synthesize import synthesize_h36m
    from ctxpose.errors import DataError
    from ctxpose.utils.io import atomic_write_text

    processed, marker = out / "processed", out / "demo_data.json"
    settings = json.dumps({"subjects": ["S1", "S9"], "actions": list(DEMO_ACTIONS), "frames": frames,
                           "size": 320, "image_size": image_size})
    if marker.is_file() and marker.read_text() == settings and (processed / "labels.npz").is_file():
        return processed  # made by an earlier demo with the same settings
    if (out / "raw").exists() or processed.exists():
        raise DataError(f"{out}: holds data that the demo did not make with these settings "
                        f"(no matching {marker.name}); use an empty --out folder")
    synthesize_h36m(out / "raw", subjects=("S1", "S9"), actions=DEMO_ACTIONS, n_frames=frames, size=320)
    report = preprocess_h36m(out / "raw", processed,
                             PreprocessOptions(image_size=image_size, train_every=1, test_every=1))
    if not report.ok:
        raise DataError(f"{processed}: preprocessing failed for {sorted(report.failed)}")
    atomic_write_text(marker, settings)
    return processed


def evaluate_untrained(cfg: ExperimentConfig, path: Path) -> float:
    """Val MPJPE (mm) of the run's initial weights, saved to ``path``: the demo's "before" number."""
    import torch

    from ctxpose.engine.evaluator import evaluate_checkpoint
    from ctxpose.engine.trainer import Components
    from ctxpose.utils.io import torch_save_atomic
    from ctxpose.utils.seed import seed_everything

    seed_everything(cfg.train.seed)  # the same initial weights the training run starts from
    torch_save_atomic(Components().build_model(cfg).state_dict(), path)
    return evaluate_checkpoint(cfg, path, torch.device("cpu"), "val").metrics["mpjpe"]
