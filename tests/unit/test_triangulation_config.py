"""model.architecture: learnable-triangulation's experiment YAMLs through config_compat, the shipped configs, and
the rules that refuse settings which would not act."""

import pytest
import torch
import yaml

from ctxpose.config import config_to_dict, load_config, save_config
from ctxpose.errors import ConfigError
from ctxpose.models import build_model
from ctxpose.models.algebraic import AlgebraicTriangulationNet, RansacTriangulationNet
from ctxpose.models.contextpose import ContextPoseNet
from ctxpose.models.v2v import PlainV2VNet


def lt_yaml(name: str) -> dict:
    """The structure of karfly/learnable-triangulation-pytorch experiments/human36m/{train,eval}/human36m_*.yaml
    (the keys each of its three models' files has; values of the released setting)."""
    split = {"h36m_root": "./data/human36m/processed/",
             "labels_path": "./data/human36m/extra/human36m-multiview-labels-GTbboxes.npy",
             "with_damaged_actions": True, "undistort_images": True, "scale_bbox": 1.0, "shuffle": True,
             "randomize_n_views": False, "min_n_views": None, "max_n_views": None, "num_workers": 8}
    val = {**split, "shuffle": False, "retain_every_n_frames_in_test": 1}
    model = {"name": name, "init_weights": False, "checkpoint": "", "heatmap_multiplier": 100.0,
             "heatmap_softmax": True,
             "backbone": {"name": "resnet152", "style": "simple", "init_weights": True,
                          "checkpoint": "./data/pretrained/human36m/pose_resnet_4.5_pixels_human36m.pth",
                          "num_joints": 17, "num_layers": 152}}
    opt = {"criterion": "MSESmooth", "mse_smooth_threshold": 400, "n_objects_per_epoch": 15000, "n_epochs": 9999,
           "batch_size": 8, "val_batch_size": 100, "lr": 0.00001, "scale_keypoints_3d": 0.1}
    if name == "alg":
        model.update(use_confidences=True, init_weights=True,
                     checkpoint="./data/pretrained/human36m/human36m_alg_10-04-2019/checkpoints/0060/weights.pth")
    elif name == "ransac":
        model.update(direct_optimization=True)
    else:
        model.update(kind="mpii", volume_aggregation_method="softmax", use_gt_pelvis=False, cuboid_side=2500.0,
                     volume_size=64, volume_multiplier=1.0, volume_softmax=True)
        opt = {"criterion": "MAE", "use_volumetric_ce_loss": True, "volumetric_ce_loss_weight": 0.01,
               "n_objects_per_epoch": 15000, "n_epochs": 9999, "batch_size": 5, "val_batch_size": 10, "lr": 0.0001,
               "process_features_lr": 0.001, "volume_net_lr": 0.001, "scale_keypoints_3d": 0.1}
        results = "./data/pretrained/human36m/human36m_alg_10-04-2019/checkpoints/0060/results/"
        split = {**split, "pred_results_path": results + "train.pkl", "num_workers": 5}
        val = {**val, "pred_results_path": results + "val.pkl", "num_workers": 10}
    return {"title": f"human36m_{name}", "kind": "human36m", "vis_freq": 1000, "vis_n_elements": 10,
            "image_shape": [384, 384], "opt": opt, "model": model,
            "dataset": {"kind": "human36m", "train": split, "val": val}}


def write(tmp_path, data) -> str:
    path = tmp_path / "original.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_original_algebraic_yaml_loads_as_the_shipped_config(tmp_path):
    cfg = load_config(write(tmp_path, lt_yaml("alg")))
    shipped = load_config("human36m_alg")
    m = cfg.model
    assert m.architecture == "algebraic" and m.triangulation == shipped.model.triangulation
    assert m.triangulation.use_confidences and m.triangulation.heatmap_multiplier == 100.0
    assert m.checkpoint.endswith("human36m_alg_10-04-2019/checkpoints/0060/weights.pth") and m.init_weights
    assert m.backbone.num_layers == 152 and m.backbone.checkpoint.endswith("pose_resnet_4.5_pixels_human36m.pth")
    assert cfg.loss == shipped.loss  # MSESmooth at 400, no volume losses
    assert cfg.train.backbone_lr == 1e-5 and cfg.val.batch_size == 100
    # the original's nulls: every camera (a 3-camera frame is evaluated, its views repeated), two distinct at least
    for split in (cfg.train, cfg.val, shipped.train, shipped.val):
        assert (split.randomize_n_views, split.min_n_views, split.max_n_views) == (False, 2, None)
    assert cfg.dataset.root == "./data/human36m/processed/"
    assert cfg.dataset.val_labels_path.endswith("human36m-multiview-labels-GTbboxes.npy")


def test_original_volumetric_and_ransac_yamls_load(tmp_path):
    vol = load_config(write(tmp_path, lt_yaml("vol")))
    shipped = load_config("human36m_vol_softmax")
    assert vol.model.architecture == "volumetric"
    assert vol.model.volume_net == shipped.model.volume_net and vol.loss == shipped.loss
    assert vol.val.pred_results_path.endswith("results/val.pkl") and not vol.model.volume_net.use_gt_pelvis
    assert (vol.train.process_features_lr, vol.train.volume_net_lr, vol.train.backbone_lr) == (1e-3, 1e-3, 1e-4)
    for split in (vol.train, vol.val, shipped.train, shipped.val):
        assert (split.min_n_views, split.max_n_views) == (1, None)
    ransac = load_config(write(tmp_path, lt_yaml("ransac")))
    assert ransac.model.architecture == "ransac" and ransac.model.triangulation.direct_optimization
    assert ransac.model.checkpoint is None
    assert ransac.model.triangulation == load_config("human36m_ransac").model.triangulation
    for split in (ransac.train, ransac.val, load_config("human36m_ransac").val):
        assert (split.min_n_views, split.max_n_views) == (2, None)


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d["model"].update(name="soft"), "model.name: 'soft', expected one of alg, ransac, vol"),
    (lambda d: d["opt"].update(lr_sched=1), "opt.lr_sched: unknown key in a learnable-triangulation config"),
    (lambda d: d["model"].update(use_confidence=False), "did you mean model.use_confidences?"),
    (lambda d: d["dataset"]["val"].update(h36m_root="/elsewhere"), "dataset.train.h36m_root and dataset.val.h36m_root"),
    (lambda d: d["model"]["backbone"].update(name="resnet50"), "'resnet50' disagrees with model.backbone.num_layers"),
    (lambda d: d["model"].update(heatmap_multiplier=-1.0), "model.triangulation.heatmap_multiplier: -1.0"),
])
def test_original_yaml_errors_are_one_line(tmp_path, change, message):
    data = lt_yaml("alg")
    change(data)
    with pytest.raises(ConfigError, match=message) as e:
        load_config(write(tmp_path, data))
    assert "\n" not in str(e.value) and "original.yaml" in str(e.value)


@pytest.mark.parametrize("name", ["human36m_alg", "human36m_vol_softmax", "human36m_ransac", "tiny_cpu_alg",
                                  "tiny_cpu_vol", "tiny_cpu_ransac"])
def test_shipped_configs_round_trip(tmp_path, name):
    cfg = load_config(name)
    save_config(cfg, tmp_path / "out.yaml")
    assert load_config(tmp_path / "out.yaml") == cfg
    assert yaml.safe_load((tmp_path / "out.yaml").read_text())["model"]["architecture"] == cfg.model.architecture
    assert config_to_dict(cfg)["model"]["triangulation"]["heatmap_multiplier"] == 100.0


@pytest.mark.parametrize(("overrides", "messages"), [
    (["model.triangulation.use_confidences=false"], ["model.triangulation.use_confidences: acts only for "
                                                     "model.architecture algebraic (this is contextpose)"]),
    (["model.architecture=algebraic", "model.image_shape=[128, 128]"],
     ["loss.use_volumetric_ce_loss: the algebraic model has no volume",
      "loss.use_global_attention_loss: the algebraic model has no volume"]),
    (["model.architecture=ransac", "model.volume_net.volume_size=32", "loss.use_volumetric_ce_loss=false",
      "loss.use_global_attention_loss=false", "model.triangulation.heatmap_softmax=false", "train.volume_net_lr=0.1",
      "loss.volumetric_ce_loss_weight=0.5"],
     ["model.volume_net.volume_size: the ransac model has no volume",
      "loss.volumetric_ce_loss_weight: the ransac model has no volume; leave it out",
      "model.triangulation.heatmap_softmax: acts only for model.architecture algebraic (this is ransac)",
      "train.volume_net_lr: the ransac model is a backbone only"]),
    (["model.architecture=volumetric", "model.volume_net.volume_size=48", "model.volume_net.temperature=9.0"],
     ["model.volume_net.temperature: acts only for ContextPose's attention block",
      "loss.use_global_attention_loss: the volumetric model has no attention block",
      "model.volume_net.volume_size: 48, the volumetric model's V2V pools five times by 2"]),
    (["model.architecture=volumetric", "loss.use_global_attention_loss=false",
      "loss.global_attention_loss_weight=5.0"], ["loss.global_attention_loss_weight: the volumetric model has no "
                                                 "attention block"]),
    (["model.architecture=algebraic", "model.image_shape=[64, 64]", "loss.use_volumetric_ce_loss=false",
      "loss.use_global_attention_loss=false"], ["model.image_shape: [64, 64], the algebraic model's confidence head"]),
    (["model.architecture=ransac", "loss.use_volumetric_ce_loss=false", "loss.use_global_attention_loss=false",
      "train.min_n_views=2", "train.max_n_views=4", "val.min_n_views=1", "val.max_n_views=4"],
     ["val.min_n_views: 1, the ransac model triangulates from at least two distinct views; expected >= 2"]),
    (["model.architecture=algebraic", "loss.use_volumetric_ce_loss=false", "loss.use_global_attention_loss=false",
      "train.min_n_views=null", "train.max_n_views=null", "val.min_n_views=2", "val.max_n_views=null"],
     ["train.min_n_views: null, the algebraic model triangulates from at least two distinct views"]),
    (["model.architecture=algebraic", "model.image_shape=[128, 128]", "loss.use_volumetric_ce_loss=false",
      "loss.use_global_attention_loss=false", "train.root_jitter_mm=100", "train.world_tilt_deg=10"],
     ["train.root_jitter_mm: the algebraic model has no cuboid to displace",
      "train.world_tilt_deg: the algebraic model has no cuboid to tilt"]),
])
def test_settings_that_would_not_act_are_refused(overrides, messages):
    with pytest.raises(ConfigError) as e:
        load_config(None, overrides)
    for message in messages:
        assert message in str(e.value)


def test_build_model_dispatches_on_the_architecture():
    valid = ["model.architecture=algebraic", "loss.use_volumetric_ce_loss=false",
             "loss.use_global_attention_loss=false", "train.min_n_views=2", "train.max_n_views=4",
             "val.min_n_views=2", "val.max_n_views=null"]
    assert load_config(None, valid).model.architecture == "algebraic"  # 384 px: the confidence head fits
    alg = build_model(load_config("tiny_cpu_alg"))
    assert isinstance(alg, AlgebraicTriangulationNet) and alg.use_confidences
    no_conf = build_model(load_config("tiny_cpu_alg", ["model.triangulation.use_confidences=false",
                                                       "model.triangulation.heatmap_multiplier=10.0"]))
    assert not hasattr(no_conf.backbone, "alg_confidences") and no_conf.heatmap_multiplier == 10.0
    ransac = build_model(load_config("tiny_cpu_ransac", ["model.triangulation.reprojection_threshold=7.5"]))
    assert isinstance(ransac, RansacTriangulationNet) and ransac.reprojection_threshold == 7.5
    with torch.device("meta"):
        vol = build_model(load_config("tiny_cpu_vol"))
    assert isinstance(vol, ContextPoseNet) and isinstance(vol.volume_net, PlainV2VNet)
    assert not any("atten" in k for k in vol.state_dict())
    with pytest.raises(ConfigError, match="needs the limb prior"):
        build_model(load_config("tiny_cpu"))


@pytest.mark.parametrize("name", ["human36m_alg", "human36m_ransac", "human36m_vol_softmax"])
def test_shipped_view_settings_keep_the_three_camera_frames(ours, name):
    """The synthetic labels' S11 lacks camera 0 (as S11 Directions-2 lacks 54138969): with the shipped configs'
    view settings its frames are samples that repeat their own three views, as the original evaluates them."""
    from ctxpose.data.datasets import Human36MDataset
    from tests.unit import dataset_fixtures as F

    cfg = load_config(name)
    ds = Human36MDataset(ours, "val", cfg, image_shape=(32, 32), use_gt_pelvis=True)
    ids = ds.sample_ids()
    s11 = [i for i in range(len(ds)) if ds.subject_names[ids["subject_idx"][i]] == "S11"]
    assert len(s11) == len(F.FRAMES)  # every S11 frame
    old = Human36MDataset(ours, "val", cfg, image_shape=(32, 32), use_gt_pelvis=True, min_n_views=4, max_n_views=4)
    assert len(old) == len(ds) - len(s11)  # what the former mapping of null to 4 left out
    assert all(ds[i]["camera_indices"].tolist() == [1, 2, 3, 1] for i in s11)
    assert all(ds[i]["camera_indices"].tolist() == [0, 1, 2, 3] for i in range(len(ds)) if i not in s11)
