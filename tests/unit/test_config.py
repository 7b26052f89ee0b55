"""Typed config: our YAML, the original ContextPose YAML, overrides and one-line errors."""

from pathlib import Path

import pytest
import yaml

from ctxpose.config import ExperimentConfig, config_to_dict, load_config, save_config
from ctxpose.errors import ConfigError

ROOT = Path(__file__).parents[2]

# Structure of experiments/human36m/train/human36m_vol_softmax_single.yaml in ShirleyMaxx/ContextPose-PyTorch-release
ORIGINAL_TRAIN_YAML = """
title: "human36m_vol_softmax_single"
kind: "human36m"
azureroot: ""
batch_output: true
vis_freq: 1000
vis_n_elements: 10

model:
  name: "vol"
  kind: "mpii"
  image_shape: [384, 384]
  heatmap_shape: [96, 96]
  heatmap_softmax: true
  heatmap_multiplier: 100.0
  init_weights: true
  checkpoint: ""
  backbone:
    name: "resnet152"
    style: "simple"
    num_final_layer_channel: 17
    num_joints: 17
    num_layers: 152
    init_weights: true
    fix_weights: false
    checkpoint: "data/pretrained/human36m/backbone_weights.pth"
  volume_net:
    volume_aggregation_method: "softmax"
    use_gt_pelvis: false
    cuboid_size: 2500.0
    volume_size: 64
    volume_multiplier: 1.0
    volume_softmax: true
    use_feature_v2v: true
    temperature: 1500

loss:
  criterion: "MAE"
  scale_keypoints_3d: 0.1
  use_volumetric_ce_loss: true
  volumetric_ce_loss_weight: 0.01
  use_global_attention_loss: True
  global_attention_loss_weight: 1000000

dataset:
  kind: "human36m"
  data_format: ""
  root: "data/human36m/processed"
  extra_root: "data/human36m/extra"
  train_labels_path: "data/human36m/extra/human36m-multiview-labels-GTbboxes.npy"

train:
  n_objects_per_epoch: 15000
  n_epochs: 9999
  batch_size: 4
  optimizer: 'Adam'
  backbone_lr: 0.0001
  backbone_lr_step: [1000]
  backbone_lr_factor: 0.1
  process_features_lr: 0.001
  volume_net_lr: 0.001
  volume_net_lr_step: [1000]
  volume_net_lr_factor: 0.5
  with_damaged_actions: true
  undistort_images: true
  scale_bbox: 1.0
  shuffle: true
  randomize_n_views: true
  min_n_views: 1
  max_n_views: 1
  num_workers: 8
  limb_length_path: "data/human36m/extra/mean_and_std_limb_length.h5"
  pred_results_path: "data/pretrained/human36m/human36m_alg_10-04-2019/checkpoints/0060/results/train.pkl"

val:
  batch_size: 8
  with_damaged_actions: true
  undistort_images: true
  scale_bbox: 1.0
  shuffle: false
  randomize_n_views: true
  min_n_views: 1
  max_n_views: 1
  num_workers: 10
  retain_every_n_frames_in_test: 1
  limb_length_path: "data/human36m/extra/mean_and_std_limb_length.h5"
  pred_results_path: "data/pretrained/human36m/human36m_alg_10-04-2019/checkpoints/0060/results/val.pkl"
"""


def write(tmp_path, text, name="c.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_original_yaml_maps_onto_ours(tmp_path):
    cfg = load_config(write(tmp_path, ORIGINAL_TRAIN_YAML))
    assert cfg.model.backbone.num_layers == 152 and cfg.model.image_shape == (384, 384)
    assert cfg.model.volume_net.temperature == 1500.0 and isinstance(cfg.model.volume_net.temperature, float)
    assert cfg.model.volume_net.att_channels == 51  # not in the file: the original's default
    assert cfg.model.checkpoint == ""
    assert cfg.loss.global_attention_loss_weight == 1e6
    assert cfg.dataset.limb_length_path == "data/human36m/extra/mean_and_std_limb_length.h5"  # from train.*
    assert cfg.train.backbone_lr_step == (1000,) and cfg.train.vis_freq == 1000
    assert cfg.val.pred_results_path.endswith("results/val.pkl")
    assert cfg.val.num_workers == 10 and cfg.train.num_workers == 8


def test_original_yaml_azureroot_prefixes_data_paths(tmp_path):
    text = ORIGINAL_TRAIN_YAML.replace('azureroot: ""', 'azureroot: "/mnt/blob"')
    cfg = load_config(write(tmp_path, text))
    assert cfg.dataset.root == "/mnt/blob/data/human36m/processed"
    assert cfg.model.backbone.checkpoint == "/mnt/blob/data/pretrained/human36m/backbone_weights.pth"


def test_paper_config_equals_original_setting(tmp_path):
    ours = load_config(ROOT / "configs" / "human36m_contextpose.yaml")
    orig = load_config(write(tmp_path, ORIGINAL_TRAIN_YAML))
    assert ours.model.volume_net == orig.model.volume_net
    assert ours.loss == orig.loss
    assert ours.model.backbone.num_layers == orig.model.backbone.num_layers


@pytest.mark.parametrize("name", ["human36m_contextpose.yaml", "tiny_cpu.yaml"])
def test_shipped_configs_load_and_round_trip(tmp_path, name):
    cfg = load_config(ROOT / "configs" / name)
    save_config(cfg, tmp_path / "out.yaml")
    assert load_config(tmp_path / "out.yaml") == cfg
    assert yaml.safe_load((tmp_path / "out.yaml").read_text()) == config_to_dict(cfg)


def test_overrides_return_new_object_and_parse_yaml_values():
    base = ExperimentConfig()
    cfg = load_config(None, ["train.batch_size=8", "model.image_shape=[256, 256]", "model.checkpoint=null"])
    assert cfg.train.batch_size == 8 and cfg.model.image_shape == (256, 256) and cfg.model.checkpoint is None
    assert base.train.batch_size == 4
    assert cfg.model.volume_net == base.model.volume_net


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.batch_sise=3", "train.batch_sise: unknown key, did you mean train.batch_size?"),
        ("model.volume_net.temprature=3", "did you mean model.volume_net.temperature?"),
        ("train.batch_size=four", "train.batch_size: expected an integer, got 'four'"),
        ("train.batch_size=2.5", "train.batch_size: expected an integer"),
        ("model.volume_net.use_feature_v2v=3", "expected true or false"),
        ("loss.criterion=L3", "loss.criterion: 'L3' is not one of 'MAE', 'MSE', 'MSESmooth'"),
        ("model.image_shape=[1, 2, 3]", "model.image_shape: expected a list of 2 items"),
        ("train", "expected key=value"),
    ],
)
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    assert message in str(e.value) and "\n" not in str(e.value)


def test_unknown_key_in_file_names_file_and_key(tmp_path):
    p = write(tmp_path, "model:\n  volume_net:\n    cuboid_sise: 2000\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: model\.volume_net\.cuboid_sise: unknown key, did you mean "
                                          r"model\.volume_net\.cuboid_size\?"):
        load_config(p)


def test_unknown_key_in_original_yaml(tmp_path):
    p = write(tmp_path, ORIGINAL_TRAIN_YAML.replace("  num_workers: 8", "  num_wrokers: 8"))
    with pytest.raises(ConfigError, match="train.num_wrokers: unknown key in original ContextPose config, did you "
                                          "mean train.num_workers"):
        load_config(p)


def test_original_keys_with_one_supported_value(tmp_path):
    """kind, model.name, model.kind, erase: the original's own values load (and are ignored), others are refused
    with the reason, every one in the same line; the original's defaults elsewhere (mse_smooth_threshold 0) load."""
    text = ORIGINAL_TRAIN_YAML.replace("  criterion: \"MAE\"", "  criterion: \"MAE\"\n  mse_smooth_threshold: 0")
    text = text.replace("  shuffle: false\n", "  shuffle: false\n  erase: false\n")
    cfg = load_config(write(tmp_path, text))
    assert cfg.loss.mse_smooth_threshold == 0 and not hasattr(cfg.model, "kind") and not hasattr(cfg.dataset, "kind")
    bad = (text.replace('kind: "human36m"\nazureroot', 'kind: "cmu"\nazureroot').replace('name: "vol"', 'name: "alg"')
           .replace('kind: "mpii"', 'kind: "coco"').replace("erase: false", "erase: true"))
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, bad, "bad.yaml"))
    message = str(e.value)
    assert "\n" not in message
    for part in ("kind: 'cmu', only 'human36m' is supported: ", "model.name: 'alg', only 'vol' is supported",
                 "model.kind: 'coco', only 'mpii' is supported", "val.erase: True, only False is supported: random "
                 "erasing is not implemented"):
        assert part in message, part
    with pytest.raises(ConfigError, match="model.kind: unknown key"):  # not a key of our own layout any more
        load_config(None, ["model.kind=mpii"])


_RESULTS = "data/pretrained/human36m/human36m_alg_10-04-2019/checkpoints/0060/results"
#: every key of the original's ``mvn/utils/cfg.py`` at its default value (a file that sets them all)
ORIGINAL_DEFAULTS = {
    "title": "human36m_vol_softmax_single", "kind": "human36m", "azureroot": "", "logdir": "logs",
    "batch_output": False, "vis_freq": 1000, "vis_n_elements": 10,
    "model": {"name": "vol", "kind": "mpii", "image_shape": [384, 384], "heatmap_shape": [96, 96],
              "heatmap_softmax": True, "heatmap_multiplier": 100.0, "init_weights": True, "checkpoint": None,
              "backbone": {"name": "resnet152", "style": "simple", "num_final_layer_channel": 17, "num_joints": 17,
                           "num_layers": 152, "init_weights": True, "fix_weights": False, "checkpoint": ""},
              "volume_net": {"volume_aggregation_method": "softmax", "use_gt_pelvis": False, "cuboid_size": 2500.0,
                             "volume_size": 64, "volume_multiplier": 1.0, "volume_softmax": True,
                             "use_feature_v2v": True, "att_channels": 51, "temperature": 1500}},
    "loss": {"criterion": "MAE", "mse_smooth_threshold": 0, "grad_clip": 0, "scale_keypoints_3d": 0.1,
             "use_volumetric_ce_loss": True, "volumetric_ce_loss_weight": 0.01, "use_global_attention_loss": True,
             "global_attention_loss_weight": 1000000},
    "dataset": {"kind": "human36m", "data_format": "", "transfer_cmu_to_human36m": False,
                "root": "data/human36m/processed/", "extra_root": "data/human36m/extra",
                "train_labels_path": "data/human36m/extra/human36m-multiview-labels-GTbboxes.npy",
                "val_labels_path": "data/human36m/extra/human36m-multiview-labels-GTbboxes.npy",
                "train_dataset": "multiview_human36m", "val_dataset": "human36m"},
    "train": {"n_objects_per_epoch": 15000, "n_epochs": 9999, "n_iters_per_epoch": 5000, "batch_size": 3,
              "optimizer": "Adam", "backbone_lr": 0.0001, "backbone_lr_step": [1000], "backbone_lr_factor": 0.1,
              "process_features_lr": 0.001, "volume_net_lr": 0.001, "volume_net_lr_step": [1000],
              "volume_net_lr_factor": 0.5, "with_damaged_actions": True, "undistort_images": True, "scale_bbox": 1.0,
              "ignore_cameras": [], "crop": True, "erase": False, "shuffle": True, "randomize_n_views": True,
              "min_n_views": 1, "max_n_views": 1, "num_workers": 8,
              "limb_length_path": "data/human36m/extra/mean_and_std_limb_length.h5",
              "pred_results_path": f"{_RESULTS}/train.pkl"},
    "val": {"batch_size": 6, "with_damaged_actions": True, "undistort_images": True, "scale_bbox": 1.0,
            "ignore_cameras": [], "crop": True, "erase": False, "shuffle": False, "randomize_n_views": True,
            "min_n_views": 1, "max_n_views": 1, "num_workers": 10, "retain_every_n_frames_in_test": 1,
            "limb_length_path": "data/human36m/extra/mean_and_std_limb_length.h5",
            "pred_results_path": f"{_RESULTS}/val.pkl"},
}


def test_every_default_of_the_original_loads(tmp_path):
    cfg = load_config(write(tmp_path, yaml.safe_dump(ORIGINAL_DEFAULTS)))
    assert cfg.loss.mse_smooth_threshold == 0 and cfg.train.batch_size == 3 and cfg.val.batch_size == 6
    assert not cfg.model.volume_net.use_gt_pelvis and cfg.val.pred_results_path.endswith("val.pkl")


def test_inconsistent_original_backbone_name(tmp_path):
    p = write(tmp_path, ORIGINAL_TRAIN_YAML.replace('name: "resnet152"', 'name: "resnet50"'))
    with pytest.raises(ConfigError, match="model.backbone.name: 'resnet50' disagrees"):
        load_config(p)


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "model: [unclosed"))
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(write(tmp_path, "- a\n- b\n"))


def test_demo_uses_the_tiny_cpu_model_and_losses():
    """The demo's built-in config (usable without the repository's configs/) is the tiny setting's model."""
    from ctxpose.engine.demo import demo_config

    demo = demo_config(Path("processed"))
    tiny = load_config(ROOT / "configs" / "tiny_cpu.yaml")
    assert demo.model == tiny.model and demo.loss == tiny.loss
    assert demo.dataset.root == "processed"


def test_the_3dhp_config_is_the_paper_setting_with_a_frozen_start():
    import dataclasses

    paper = load_config("human36m_contextpose")
    frozen = load_config("human36m_contextpose_3dhp")
    assert frozen.model.backbone.freeze_epochs == 20 and paper.model.backbone.freeze_epochs == 0
    same = dataclasses.replace(frozen, title=paper.title,
                               model=dataclasses.replace(frozen.model, backbone=dataclasses.replace(
                                   frozen.model.backbone, freeze_epochs=0)))
    assert same == paper
