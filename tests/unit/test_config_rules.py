"""The one validation of config values (`validate_config`, run by every load): one case per rule, the
pelvis-source rules in both directions, unused original keys, and a loader that cannot be made to blow up."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from ctxpose.config import ExperimentConfig, load_config, validate_config
from ctxpose.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
PAPER = ROOT / "configs" / "human36m_contextpose.yaml"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.batch_size=0", "train.batch_size: 0, expected > 0"),
        ("train.batch_size=-1", "train.batch_size: -1, expected > 0"),
        ("val.batch_size=0", "val.batch_size: 0, expected > 0"),
        ("train.num_workers=-1", "train.num_workers: -1, expected >= 0"),
        ("train.checkpoint_every_epochs=0", "train.checkpoint_every_epochs: 0, expected > 0"),
        ("train.n_epochs=0", "train.n_epochs: 0, expected > 0"),
        ("train.n_objects_per_epoch=0", "train.n_objects_per_epoch: 0, expected > 0"),
        ("train.max_nan_steps=0", "train.max_nan_steps: 0, expected > 0"),
        ("train.vis_n_elements=0", "train.vis_n_elements: 0, expected > 0"),
        ("train.vis_freq=-1", "train.vis_freq: -1, expected >= 0"),
        ("train.seed=-3", "train.seed: -3, expected >= 0"),
        ("train.volume_net_lr=0", "train.volume_net_lr: 0.0, expected > 0"),
        ("train.backbone_lr_factor=-0.1", "train.backbone_lr_factor: -0.1, expected > 0"),
        ("train.backbone_lr_step=[5,2]", "train.backbone_lr_step: [5, 2], expected epochs >= 1 in increasing order"),
        ("train.volume_net_lr_step=[0]", "train.volume_net_lr_step: [0], expected epochs >= 1"),
        ("train.scale_bbox=0", "train.scale_bbox: 0.0, expected > 0"),
        ("train.min_n_views=0", "train.min_n_views: 0, expected > 0"),
        ("train.max_n_views=0", "train.max_n_views: 0, expected >= min_n_views (1) or null (every camera)"),
        ("val.min_n_views=2", "val.max_n_views: 1, expected >= min_n_views (2)"),
        ("train.min_n_views=-1", "train.min_n_views: -1, expected > 0"),
        ("val.ignore_cameras=[-1]", "val.ignore_cameras: [-1], expected camera indices >= 0"),
        ("val.retain_every_n_frames_in_test=0", "val.retain_every_n_frames_in_test: 0, expected > 0"),
        ("train.retain_every_n_frames_in_test=2", "train.retain_every_n_frames_in_test: acts only on the val split"),
        ("val.shuffle=true", "val.shuffle: validation always runs in dataset order"),
        ("model.skeleton=foo", "model.skeleton: 'foo' is not one of 'contextpose17'"),
        ("model.backbone.num_layers=42", "model.backbone.num_layers: 42 is not one of 18, 34, 50, 101, 152"),
        ("model.backbone.num_layers=152.0", "model.backbone.num_layers: 152.0 is not one of"),
        ("model.backbone.style=caffe", "model.backbone.style: caffe moves the stride"),
        ("model.image_shape=[100,100]", "model.image_shape: [100, 100], expected positive multiples of 32"),
        ("model.backbone.num_final_layer_channel=16", "model.backbone.num_final_layer_channel: 16, expected 17"),
        ("model.volume_net.att_channels=50", "model.volume_net.att_channels: 50, expected a positive multiple of "
                                             "the joint count 17"),
        ("model.volume_net.att_channels=0", "model.volume_net.att_channels: 0, expected a positive multiple"),
        ("model.volume_net.volume_size=18", "model.volume_net.volume_size: 18, expected a multiple of 4, >= 8"),
        ("model.volume_net.volume_size=4", "model.volume_net.volume_size: 4, expected a multiple of 4, >= 8"),
        ("model.volume_net.cuboid_size=0", "model.volume_net.cuboid_size: 0.0, expected > 0"),
        ("model.volume_net.temperature=-1", "model.volume_net.temperature: -1.0, expected > 0"),
        ("model.volume_net.ga_mask_sigma=0", "model.volume_net.ga_mask_sigma: 0.0, expected > 0"),
        ("model.volume_net.volume_multiplier=0", "model.volume_net.volume_multiplier: 0.0, expected > 0"),
        ("model.volume_net.normalize_relu_volumes=true", "normalize_relu_volumes: acts only with volume_softmax: "
                                                         "false"),
        ("loss.scale_keypoints_3d=0", "loss.scale_keypoints_3d: 0.0, expected > 0"),
        ("loss.volumetric_ce_loss_weight=-1", "loss.volumetric_ce_loss_weight: -1.0, expected >= 0"),
        ("loss.global_attention_loss_weight=-1", "loss.global_attention_loss_weight: -1.0, expected >= 0"),
        ("loss.grad_clip=-1", "loss.grad_clip: -1.0, expected >= 0"),
        ("train.root_jitter_mm=-1", "train.root_jitter_mm: -1.0, expected >= 0"),
        ("train.root_jitter_mm=1250", "train.root_jitter_mm: 1250, expected less than half of "
                                      "model.volume_net.cuboid_size (2500 mm)"),
        ("train.world_tilt_deg=-1", "train.world_tilt_deg: -1.0, expected >= 0"),
        ("train.world_tilt_deg=60", "train.world_tilt_deg: 60, expected at most 45"),
        ("dataset.train_subjects=[]", "dataset.train_subjects: empty"),
        ("dataset.val_subjects=[]", "dataset.val_subjects: empty"),
        ("model.volume_net.use_gt_pelvis=false", "train.pred_results_path: not set, but "
                                                 "model.volume_net.use_gt_pelvis is false"),
    ],
)
def test_each_rule(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(None, ["model.backbone.num_layers=18", override])
    assert message in str(e.value) and "\n" not in str(e.value)


def test_mse_smooth_threshold_is_judged_only_where_it_is_read() -> None:
    with pytest.raises(ConfigError, match=r"loss.mse_smooth_threshold: 0.0, expected > 0"):
        load_config(None, ["loss.criterion=MSESmooth", "loss.mse_smooth_threshold=0"])
    assert load_config(None, ["loss.mse_smooth_threshold=0"]).loss.mse_smooth_threshold == 0  # MAE: unread


def test_every_broken_rule_and_unknown_key_is_reported_at_once(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  batch_sise: 2\n  num_wrokers: 3\nmodel:\n  volume_net:\n    cuboid_sise: 1\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    for key in ("train.batch_sise", "train.num_wrokers", "model.volume_net.cuboid_sise"):
        assert key in str(e.value)
    with pytest.raises(ConfigError) as e:
        load_config(None, ["train.batch_size=0", "train.num_workers=-1"])
    assert "train.batch_size" in str(e.value) and "train.num_workers" in str(e.value)


def test_valid_configs_pass_and_the_defaults_are_valid() -> None:
    validate_config(ExperimentConfig())
    for name in ("tiny_cpu", "human36m_contextpose"):
        load_config(name)
    load_config(None, ["model.volume_net.volume_softmax=false", "model.volume_net.normalize_relu_volumes=true",
                       "model.volume_net.volume_size=8", "model.volume_net.att_channels=34"])
    views = load_config(None, ["train.max_n_views=null", "train.min_n_views=null", "val.randomize_n_views=false",
                               "val.min_n_views=2", "val.max_n_views=4"])
    assert views.train.max_n_views is None and views.val.max_n_views == 4


def test_use_gt_pelvis_has_one_default_in_code_and_docs() -> None:
    assert ExperimentConfig().model.volume_net.use_gt_pelvis is True
    docs = "".join(p.read_text() for p in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))])
    assert "use_gt_pelvis` (default `true`)" in docs and "use_gt_pelvis` (default `false`)" not in docs


def test_gt_pelvis_with_an_estimates_path_warns_that_it_is_unused(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="ctxpose.config"):
        cfg = load_config(PAPER, ["model.volume_net.use_gt_pelvis=true"])
    assert cfg.model.volume_net.use_gt_pelvis
    assert "train.pred_results_path and val.pred_results_path: unused" in caplog.text


def test_estimates_without_a_path_are_refused_for_each_split() -> None:
    with pytest.raises(ConfigError, match="val.pred_results_path: not set"):
        load_config(PAPER, ["val.pred_results_path=null"])
    assert load_config(PAPER).train.pred_results_path.endswith("results/train.pkl")


def test_original_keys_we_ignore_say_why_in_our_yaml(tmp_path: Path) -> None:
    p = tmp_path / "ours.yaml"
    p.write_text("model:\n  heatmap_shape: [96, 96]\n")
    with pytest.raises(ConfigError, match="model.heatmap_shape: not a ctxpose setting .* a quarter of "
                                          "model.image_shape"):
        load_config(p)


def test_yaml_alias_bomb_is_refused_quickly_in_one_short_line(tmp_path: Path) -> None:
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        levels.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    p = tmp_path / "bomb.yaml"
    p.write_text("\n".join(levels) + "\ntitle: *a8\n")
    start = time.perf_counter()
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert time.perf_counter() - start < 10  # a bound, not a benchmark: unguarded, this takes minutes and GBs
    assert "expands to more than" in str(e.value) and len(str(e.value)) < 300


def test_a_huge_value_is_quoted_short(tmp_path: Path) -> None:
    p = tmp_path / "big.yaml"
    p.write_text("title: [" + ", ".join(["abcdefgh"] * 5000) + "]\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert "title: expected a string" in str(e.value) and len(str(e.value)) < 300


def test_non_utf8_empty_and_oversized_files_are_one_line(tmp_path: Path) -> None:
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("title: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin\.yaml: not UTF-8 text \(byte 10\)"):
        load_config(latin)
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing\n")
    with pytest.raises(ConfigError, match="empty config file"):
        load_config(empty)
    big = tmp_path / "big.yaml"
    big.write_bytes(b"#" * (2 << 20))
    with pytest.raises(ConfigError, match="too large for a config file"):
        load_config(big)


def test_deep_nesting_is_one_line(tmp_path: Path) -> None:
    p = tmp_path / "deep.yaml"
    p.write_text("title: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert "\n" not in str(e.value)
