"""Shared by the engine e2e tests: a tiny processed synthetic Human3.6M and the tiny CPU overrides."""

from __future__ import annotations

from pathlib import Path

from ctxpose.data.h36m.preprocess import PreprocessOptions, preprocess_h36m
from ctxpose.data.h36m.synthesize import synthesize_h36m

ROOT = Path(__file__).resolve().parents[2]


def make_processed(root: Path) -> Path:
    """S1 (train) and S9 (val), Walking-1, 6 frames x 4 cameras, 32 px crops."""
    synthesize_h36m(root / "raw", subjects=("S1", "S9"), actions=("Walking-1",), n_frames=6, size=160)
    report = preprocess_h36m(root / "raw", root / "processed",
                             PreprocessOptions(image_size=32, train_every=1, test_every=1))
    assert report.ok
    return root / "processed"


def tiny_overrides(processed: Path) -> list[str]:
    return [f"dataset.root={processed}", f"dataset.limb_length_path={processed}/mean_and_std_limb_length.h5",
            "model.image_shape=[32,32]", "model.volume_net.volume_size=16",
            "train.batch_size=2", "train.n_objects_per_epoch=4", "train.n_epochs=2", "train.vis_freq=2",
            "train.vis_n_elements=2", "val.batch_size=4", "val.retain_every_n_frames_in_test=3"]
