"""Typed experiment configuration.

Frozen dataclasses, loaded from our YAML or from the original ContextPose experiment YAML
(see :mod:`ctxpose.config_compat`). Overrides (``a.b=value``) return a new object; nothing
is global or mutable. Every config that :func:`load_config`, :func:`config_from_dict` or
:func:`apply_overrides` returns has passed :func:`validate_config`: types, ranges, choices and the
cross-field rules (joint counts, volume sizes, the pelvis source). Errors are one
:class:`~ctxpose.errors.ConfigError` line listing every offending key, with the closest valid key
for typos.

Run options that are not part of an experiment (device, mixed precision, split) are the enums
:class:`DeviceKind`, :class:`Amp` and :class:`Split`, shared by the engine and the command line.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from ctxpose.config_compat import (
    IGNORED,
    convert_original_config,
    convert_triangulation_config,
    is_original_config,
    is_triangulation_config,
)
from ctxpose.errors import ConfigError

logger = logging.getLogger(__name__)

#: Largest config file read (a real one is a few kB).
MAX_CONFIG_BYTES = 1 << 20
#: Largest number of YAML nodes after alias expansion (a real config has a few hundred).
MAX_CONFIG_NODES = 20_000


class Split(str, Enum):
    """A dataset split."""

    TRAIN = "train"
    VAL = "val"


class Amp(str, Enum):
    """Mixed precision mode (``None`` means float32)."""

    BF16 = "bf16"
    FP16 = "fp16"


class DeviceKind(str, Enum):
    """Where a run computes; ``cuda`` becomes ``cuda:LOCAL_RANK`` in each process."""

    CPU = "cpu"
    CUDA = "cuda"


class EvalDataset(str, Enum):
    """What ``ctxpose eval`` evaluates on: the config's Human3.6M split, or the MPI-INF-3DHP test set."""

    H36M = "h36m"
    MPI_INF_3DHP = "3dhp"


class JointGroups(str, Enum):
    """MPI-INF-3DHP PCK/AUC joint groups: the release's 17 joints, or the 14 most projects ship."""

    ALL17 = "17"
    DROP3 = "14"


class GroundTruth3DHP(str, Enum):
    """MPI-INF-3DHP ground truth: ``univ_annot3`` (the official evaluation) or ``annot3`` (non-standard)."""

    UNIV = "univ_annot3"
    ANNOT3 = "annot3_nonstandard"


@dataclass(frozen=True)
class BackboneConfig:
    """Pose-ResNet backbone (Xiao et al. 2018) with a 3-layer deconv head."""

    num_layers: Literal[18, 34, 50, 101, 152] = 152
    style: Literal["simple", "caffe"] = "simple"
    num_final_layer_channel: int | None = None  # heatmap channels, one per joint; None: the skeleton's count
    init_weights: bool = True
    fix_weights: bool = False  # frozen backbone: not trained, batch norm in eval mode (as the original)
    # frozen (as fix_weights) for the first N epochs, then trained end to end: the released 3DHP model's schedule
    freeze_epochs: int = 0
    checkpoint: str | None = None  # backbone-only weights (original: data/pretrained/human36m/backbone_weights.pth)


@dataclass(frozen=True)
class VolumeNetConfig:
    """Unprojection, V2V network with the limb-length-prior attention, soft-argmax."""

    volume_aggregation_method: Literal["softmax", "sum", "max", "conf", "conf_norm"] = "softmax"
    # Cuboid centre: the ground-truth pelvis (true) or estimates from train/val.pred_results_path (false, the
    # paper's protocol with the released algebraic-model results).
    use_gt_pelvis: bool = True
    cuboid_size: float = 2500.0  # side of the cuboid around the pelvis, mm
    volume_size: int = 64  # voxels per side
    volume_multiplier: float = 1.0
    volume_softmax: bool = True
    use_feature_v2v: bool = True  # unproject 32 features (True) or the joint heatmaps (False)
    att_channels: int = 51  # channels of the attention block, a multiple of the joint count
    temperature: float = 1500.0  # pairwise prior temperature
    ga_mask_sigma: float = 2.0  # global-attention target Gaussian sigma, in voxels of the pooled grid
    # Quirks of the original kept by default because the released weights were trained with them:
    # "original": pairwise grid spaced cuboid/(s-1) at the pooled side s; "exact": the real pooled spacing.
    pairwise_grid: Literal["original", "exact"] = "original"
    # "original": attention-target grid is the pooled-size cuboid starting at the corner voxel and its sigma
    # comes from the first batch item; "exact": centres of the pooled cells, per-sample sigma.
    ga_mask_grid: Literal["original", "exact"] = "original"
    # With volume_softmax false the original's world soft-argmax does not divide by the volume's mass.
    normalize_relu_volumes: bool = False


@dataclass(frozen=True)
class TriangulationConfig:
    """learnable-triangulation's algebraic (``use_confidences``, ``heatmap_*``) and RANSAC (``direct_optimization``,
    ``reprojection_threshold``) settings; each acts only for its architecture."""

    use_confidences: bool = True  # weight the views by the per-joint confidence head; false: equal weights
    heatmap_multiplier: float = 100.0  # heatmaps are multiplied by it before the softmax
    heatmap_softmax: bool = True  # softmax over each heatmap (false: ReLU, normalised by the mass)
    direct_optimization: bool = True  # refine each RANSAC point on its inliers' reprojection error (Huber)
    reprojection_threshold: float = 15.0  # px of the crop below which a view is a RANSAC inlier


#: model.architecture -> the keys of model.triangulation that act for it
TRIANGULATION_KEYS = {
    "algebraic": ("use_confidences", "heatmap_multiplier", "heatmap_softmax"),
    "ransac": ("direct_optimization", "reprojection_threshold"),
}
#: keys of model.volume_net that act only for ContextPose (its limb-prior attention and the attention loss)
ATTENTION_KEYS = ("att_channels", "temperature", "ga_mask_sigma", "pairwise_grid", "ga_mask_grid")


@dataclass(frozen=True)
class ModelConfig:
    # contextpose: the paper's network; volumetric: learnable-triangulation's (ContextPose without the limb-prior
    # attention, its plain V2V); algebraic / ransac: learnable-triangulation's triangulation baselines
    architecture: Literal["contextpose", "volumetric", "algebraic", "ransac"] = "contextpose"
    skeleton: str = "contextpose17"
    image_shape: tuple[int, int] = (384, 384)  # (H, W) of the input crop, px; heatmaps are a quarter of it
    init_weights: bool = True
    checkpoint: str | None = None  # full model weights (ours or the original's)
    transfer_cmu_to_human36m: bool = False
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    volume_net: VolumeNetConfig = field(default_factory=VolumeNetConfig)
    triangulation: TriangulationConfig = field(default_factory=TriangulationConfig)


@dataclass(frozen=True)
class LossConfig:
    criterion: Literal["MAE", "MSE", "MSESmooth"] = "MAE"
    mse_smooth_threshold: float = 400.0
    scale_keypoints_3d: float = 0.1
    use_volumetric_ce_loss: bool = True
    volumetric_ce_loss_weight: float = 0.01
    # "original": divides by B*J, counting invalid joints; "valid": divides by the number of valid joints.
    volumetric_ce_denominator: Literal["original", "valid"] = "original"
    use_global_attention_loss: bool = True
    global_attention_loss_weight: float = 1e6
    grad_clip: float = 0.0  # 0 disables; the original clips at grad_clip / volume_net_lr (backbone-only: backbone_lr)


@dataclass(frozen=True)
class DatasetConfig:
    root: str = "data/human36m/processed"  # processed folder (ours or the original's layout)
    # layout of root: "ctxpose" (labels.npz + crops), "original" (the original repository's), "auto": detect
    format: Literal["auto", "ctxpose", "original"] = "auto"
    train_labels_path: str | None = None  # original layout only: human36m-multiview-labels-GTbboxes.npy
    val_labels_path: str | None = None
    limb_length_path: str = "data/human36m/extra/mean_and_std_limb_length.h5"
    train_subjects: tuple[str, ...] = ("S1", "S5", "S6", "S7", "S8")
    val_subjects: tuple[str, ...] = ("S9", "S11")


@dataclass(frozen=True)
class SplitConfig:
    """Settings shared by the train and val loaders."""

    batch_size: int = 4
    with_damaged_actions: bool = True
    undistort_images: bool = True
    scale_bbox: float = 1.0
    ignore_cameras: tuple[int, ...] = ()
    crop: bool = True
    shuffle: bool = True
    # Views per sample. max_n_views 1: each (frame, camera) is a sample (the paper's single-view setting);
    # more: a sample is a frame with that many views, null: every camera (the original's null). With
    # randomize_n_views a count in min_n_views..max_n_views is drawn per epoch and a random subset of cameras
    # per sample; without, the first max_n_views cameras in camera order (ignore_cameras removed first).
    # Frames with fewer cameras than min_n_views are left out; with fewer than the count, views repeat.
    randomize_n_views: bool = True
    min_n_views: int | None = 1  # null: 1; model.architecture algebraic/ransac need >= 2
    max_n_views: int | None = 1
    num_workers: int = 4
    retain_every_n_frames_in_test: int = 1
    pred_results_path: str | None = None  # pelvis estimates (released algebraic-model results pickle)


@dataclass(frozen=True)
class TrainConfig(SplitConfig):
    n_objects_per_epoch: int = 15000
    n_epochs: int = 9999
    optimizer: Literal["Adam", "SGD"] = "Adam"  # paper: Adam; SGD (no momentum) for DDP tests
    backbone_lr: float = 1e-4
    backbone_lr_step: tuple[int, ...] = (1000,)
    backbone_lr_factor: float = 0.1
    process_features_lr: float = 1e-3
    volume_net_lr: float = 1e-3
    volume_net_lr_step: tuple[int, ...] = (1000,)
    volume_net_lr_factor: float = 0.5
    seed: int = 0
    sync_bn: bool = False
    deterministic: bool = False
    max_nan_steps: int = 10  # abort after this many consecutive non-finite losses
    # Root jitter: each training sample's cuboid centre (the root) moves by a random offset, uniform in
    # [-root_jitter_mm, root_jitter_mm] on each world axis, so the network learns where the pelvis is inside a
    # displaced cuboid (what `infer` needs to re-centre on an estimated root); 0: the root itself. Volumetric
    # architectures only.
    root_jitter_mm: float = 0.0
    # World tilt: each training sample's world (camera, keypoints, root) turns about the pelvis by a random angle,
    # uniform in [-world_tilt_deg, world_tilt_deg], about a random horizontal axis, so the cuboid's vertical is no
    # longer exactly gravity's (what `infer` faces when it assumes a camera without pitch); 0: the true world.
    # Volumetric architectures only.
    world_tilt_deg: float = 0.0
    checkpoint_every_epochs: int = 1
    vis_freq: int = 1000  # steps between TensorBoard image summaries; 0 disables them
    vis_n_elements: int = 10


@dataclass(frozen=True)
class ValConfig(SplitConfig):
    batch_size: int = 8
    shuffle: bool = False


@dataclass(frozen=True)
class ExperimentConfig:
    title: str = "human36m_contextpose"
    logdir: str = "runs"
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    val: ValConfig = field(default_factory=ValConfig)


# --------------------------------------------------------------------------- building from mappings


def _show(value: Any, limit: int = 60) -> str:
    """``repr`` of a value for an error message, cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and convert lists to tuples, ints to floats."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{key}: {_show(value)} does not match {tp}")
    if origin is Literal:
        if isinstance(value, bool) or value not in args or type(value) not in {type(a) for a in args}:
            raise ConfigError(f"{key}: {_show(value)} is not one of {', '.join(repr(a) for a in args)}")
        return value
    if origin is tuple:
        if isinstance(value, str) or not isinstance(value, Sequence):
            raise ConfigError(f"{key}: expected a list, got {_show(value)}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{key}: expected a list of {len(args)} items, got {_show(value)}")
        return tuple(_convert(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {_show(value)}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {_show(value)}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {_show(value)}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {_show(value)}")
        return value
    raise TypeError(f"unsupported config annotation {tp} for {key}")  # a bug in this module


def _unknown_key(cls: type, key: str, prefix: str) -> str:
    path = f"{prefix}{key}"
    if path in IGNORED:
        return f"{path}: not a ctxpose setting (a key of the original's, ignored there because: {IGNORED[path]})"
    names = [f.name for f in dataclasses.fields(cls)]
    close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
    hint = f", did you mean {prefix}{close[0]}?" if close else f" (valid: {', '.join(names)})"
    return f"{path}: unknown key{hint}"


def _build(cls: type, data: Mapping[str, Any], prefix: str, base: Any, errors: list[str]) -> Any:
    """``cls(**data)`` with types checked; problems are appended to ``errors`` (all of them, not the first)."""
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    errors.extend(_unknown_key(cls, _show(k, 40) if not isinstance(k, str) else k, prefix)
                  for k in data if k not in known)
    kwargs = {}
    for name in known:
        sub_base = getattr(base, name) if base is not None else None
        if name in data:
            value = data[name]
            if dataclasses.is_dataclass(hints[name]):
                if not isinstance(value, Mapping):
                    errors.append(f"{prefix}{name}: expected a mapping of {_type_name(hints[name])} fields, "
                                  f"got {_show(value)}")
                    continue
                kwargs[name] = _build(hints[name], value, f"{prefix}{name}.", sub_base, errors)
            else:
                try:
                    kwargs[name] = _convert(value, hints[name], prefix + name)
                except ConfigError as e:
                    errors.append(str(e))
        elif base is not None:
            kwargs[name] = sub_base
    return cls(**kwargs)  # every field has a default: one that failed its check above keeps it


def config_from_dict(data: Mapping[str, Any], base: ExperimentConfig | None = None) -> ExperimentConfig:
    """Build and validate an :class:`ExperimentConfig` from a nested mapping; missing keys keep ``base``'s values.

    Raises:
        ConfigError: every unknown key, wrong type and broken rule, in one line.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"config: expected a mapping at the top level, got {type(data).__name__}")
    errors: list[str] = []
    config = _build(ExperimentConfig, data, "", base, errors)
    if errors:
        raise ConfigError("; ".join(errors))
    validate_config(config)
    return config


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain nested dict (tuples as lists) for YAML/JSON output."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v

    return plain(config)


def leaf_paths(cls: type = ExperimentConfig, prefix: str = "") -> set[str]:
    """Dotted paths of every setting of ``cls`` (``"model.volume_net.cuboid_size"``, ...)."""
    hints = typing.get_type_hints(cls)
    out: set[str] = set()
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            out |= leaf_paths(hints[f.name], f"{prefix}{f.name}.")
        else:
            out.add(prefix + f.name)
    return out


# --------------------------------------------------------------------------- validation


def _positive(errors: list[str], key: str, value: float, minimum: float = 0.0, strict: bool = True) -> None:
    if (value <= minimum) if strict else (value < minimum):
        errors.append(f"{key}: {value!r}, expected {'>' if strict else '>='} {minimum:g}")


def _split_rules(errors: list[str], name: str, s: SplitConfig) -> None:
    _positive(errors, f"{name}.batch_size", s.batch_size)
    _positive(errors, f"{name}.num_workers", s.num_workers, strict=False)
    _positive(errors, f"{name}.scale_bbox", s.scale_bbox)
    low = 1 if s.min_n_views is None else s.min_n_views
    _positive(errors, f"{name}.min_n_views", low)
    if s.max_n_views is not None and s.max_n_views < low:
        errors.append(f"{name}.max_n_views: {s.max_n_views}, expected >= min_n_views ({low}) or null (every camera)")
    if any(c < 0 for c in s.ignore_cameras):
        errors.append(f"{name}.ignore_cameras: {list(s.ignore_cameras)}, expected camera indices >= 0")
    _positive(errors, f"{name}.retain_every_n_frames_in_test", s.retain_every_n_frames_in_test)


def _changed(section: Any, keys: Sequence[str] | None = None) -> list[str]:
    """The fields of a config section that differ from their defaults (all fields, or only ``keys``)."""
    default = type(section)()
    names = keys if keys is not None else [f.name for f in dataclasses.fields(section)]
    return [k for k in names if getattr(section, k) != getattr(default, k)]


def _architecture_rules(errors: list[str], config: ExperimentConfig) -> None:
    """Settings that act only for some ``model.architecture``: set for another one, they are refused."""
    m, loss = config.model, config.loss
    arch = m.architecture
    acting = TRIANGULATION_KEYS.get(arch, ())
    for key in _changed(m.triangulation):
        if key not in acting:
            owner = next(a for a, keys in TRIANGULATION_KEYS.items() if key in keys)
            errors.append(f"model.triangulation.{key}: acts only for model.architecture {owner} (this is {arch}); "
                          "leave it out")
    _positive(errors, "model.triangulation.heatmap_multiplier", m.triangulation.heatmap_multiplier)
    _positive(errors, "model.triangulation.reprojection_threshold", m.triangulation.reprojection_threshold)
    if arch == "algebraic" and m.triangulation.use_confidences and min(m.image_shape) < 128:
        errors.append(f"model.image_shape: {list(m.image_shape)}, the algebraic model's confidence head pools the "
                      "backbone's 1/32 map twice; expected at least 128 px per side (or "
                      "model.triangulation.use_confidences: false)")
    if arch in TRIANGULATION_KEYS and config.train.root_jitter_mm:
        errors.append(f"train.root_jitter_mm: the {arch} model has no cuboid to displace; leave it out")
    if arch in TRIANGULATION_KEYS and config.train.world_tilt_deg:
        errors.append(f"train.world_tilt_deg: the {arch} model has no cuboid to tilt (triangulation does not depend "
                      "on the world's orientation); leave it out")
    if arch in TRIANGULATION_KEYS:
        for split in ("train", "val"):
            low = getattr(config, split).min_n_views
            if low is None or low < 2:
                shown = "null" if low is None else low
                errors.append(f"{split}.min_n_views: {shown}, the {arch} model triangulates from at least two "
                              "distinct views; expected >= 2")
        for key in _changed(m.volume_net):
            errors.append(f"model.volume_net.{key}: the {arch} model has no volume (it triangulates 2D keypoints); "
                          "leave it out")
        for key in ("use_volumetric_ce_loss", "use_global_attention_loss"):
            if getattr(loss, key):
                errors.append(f"loss.{key}: the {arch} model has no volume; set it to false")
        for key in _changed(loss, ("volumetric_ce_loss_weight", "volumetric_ce_denominator",
                                   "global_attention_loss_weight")):
            errors.append(f"loss.{key}: the {arch} model has no volume; leave it out")
        for key in _changed(config.train, ("process_features_lr", "volume_net_lr", "volume_net_lr_step",
                                           "volume_net_lr_factor")):
            errors.append(f"train.{key}: the {arch} model is a backbone only (train.backbone_lr*); leave it out")
    if arch == "volumetric":
        for key in _changed(m.volume_net, ATTENTION_KEYS):
            errors.append(f"model.volume_net.{key}: acts only for ContextPose's attention block, which the "
                          "volumetric model does not have; leave it out")
        if loss.use_global_attention_loss:
            errors.append("loss.use_global_attention_loss: the volumetric model has no attention block; set it to "
                          "false")
        if _changed(loss, ("global_attention_loss_weight",)):
            errors.append("loss.global_attention_loss_weight: the volumetric model has no attention block; leave it "
                          "out")
        if m.volume_net.volume_size % 32:
            errors.append(f"model.volume_net.volume_size: {m.volume_net.volume_size}, the volumetric model's V2V pools "
                          "five times by 2; expected a multiple of 32")


def validate_config(config: ExperimentConfig) -> None:
    """Check ranges, choices and cross-field rules; the one place a config's values are judged.

    Raises:
        ConfigError: one line listing every broken rule.
    """
    from ctxpose.skeleton import SKELETONS  # numpy: not needed to build the command line

    errors: list[str] = []
    m, vn, bb, loss, t, v = (config.model, config.model.volume_net, config.model.backbone, config.loss,
                             config.train, config.val)
    skeleton = SKELETONS.get(m.skeleton)
    if skeleton is None:
        errors.append(f"model.skeleton: {_show(m.skeleton)} is not one of {', '.join(map(repr, SKELETONS))}")
    joints = skeleton.num_joints if skeleton else None
    if any(d <= 0 or d % 32 for d in m.image_shape):
        errors.append(f"model.image_shape: {list(m.image_shape)}, expected positive multiples of 32 (the backbone's "
                      "heatmaps are exactly a quarter of the input only then)")
    if joints and bb.num_final_layer_channel not in (None, joints):
        errors.append(f"model.backbone.num_final_layer_channel: {bb.num_final_layer_channel}, expected {joints} "
                      f"(joints of skeleton {m.skeleton})")
    _positive(errors, "model.backbone.freeze_epochs", bb.freeze_epochs, strict=False)
    if bb.freeze_epochs and bb.fix_weights:
        errors.append("model.backbone.freeze_epochs: the backbone is frozen for the whole run already "
                      "(fix_weights: true); set one of them")
    if bb.style == "caffe" and bb.num_layers in (18, 34):
        errors.append(f"model.backbone.style: caffe moves the stride into a bottleneck's first 1x1 conv; "
                      f"ResNet-{bb.num_layers} has basic blocks (use simple, or num_layers 50, 101 or 152)")
    if vn.volume_size < 8 or vn.volume_size % 4:
        errors.append(f"model.volume_net.volume_size: {vn.volume_size}, expected a multiple of 4, >= 8 (the V2V "
                      "network pools twice by 2)")
    if joints and (vn.att_channels <= 0 or vn.att_channels % joints):
        errors.append(f"model.volume_net.att_channels: {vn.att_channels}, expected a positive multiple of the "
                      f"joint count {joints}")
    for key in ("cuboid_size", "temperature", "ga_mask_sigma", "volume_multiplier"):
        _positive(errors, f"model.volume_net.{key}", getattr(vn, key))
    if vn.normalize_relu_volumes and vn.volume_softmax:
        errors.append("model.volume_net.normalize_relu_volumes: acts only with volume_softmax: false")
    _architecture_rules(errors, config)

    _positive(errors, "loss.scale_keypoints_3d", loss.scale_keypoints_3d)
    if loss.criterion == "MSESmooth":  # read by that criterion only (the original's default 0 is fine otherwise)
        _positive(errors, "loss.mse_smooth_threshold", loss.mse_smooth_threshold)
    for key in ("volumetric_ce_loss_weight", "global_attention_loss_weight", "grad_clip"):
        _positive(errors, f"loss.{key}", getattr(loss, key), strict=False)

    if not config.dataset.train_subjects:
        errors.append("dataset.train_subjects: empty, expected at least one subject")
    if not config.dataset.val_subjects:
        errors.append("dataset.val_subjects: empty, expected at least one subject")

    _split_rules(errors, "train", t)
    _split_rules(errors, "val", v)
    if t.retain_every_n_frames_in_test != 1:
        errors.append("train.retain_every_n_frames_in_test: acts only on the val split; leave it at 1")
    if v.shuffle:
        errors.append("val.shuffle: validation always runs in dataset order; set it to false")
    for key in ("n_objects_per_epoch", "n_epochs", "max_nan_steps", "checkpoint_every_epochs", "vis_n_elements"):
        _positive(errors, f"train.{key}", getattr(t, key))
    for key in ("backbone_lr", "process_features_lr", "volume_net_lr", "backbone_lr_factor", "volume_net_lr_factor"):
        _positive(errors, f"train.{key}", getattr(t, key))
    for key in ("seed", "vis_freq", "root_jitter_mm", "world_tilt_deg"):
        _positive(errors, f"train.{key}", getattr(t, key), strict=False)
    if t.world_tilt_deg > 45:
        errors.append(f"train.world_tilt_deg: {t.world_tilt_deg:g}, expected at most 45 (a camera's pitch or roll "
                      "that infer's no-pitch world leaves; more would lay the cuboid on its side)")
    if t.root_jitter_mm >= vn.cuboid_size / 2:
        errors.append(f"train.root_jitter_mm: {t.root_jitter_mm:g}, expected less than half of "
                      f"model.volume_net.cuboid_size ({vn.cuboid_size:g} mm), or the pelvis can leave the cuboid")
    for key in ("backbone_lr_step", "volume_net_lr_step"):
        steps = getattr(t, key)
        if any(s < 1 for s in steps) or list(steps) != sorted(steps):
            errors.append(f"train.{key}: {list(steps)}, expected epochs >= 1 in increasing order")

    if not vn.use_gt_pelvis:
        for split in ("train", "val"):
            if not getattr(config, split).pred_results_path:
                errors.append(f"{split}.pred_results_path: not set, but model.volume_net.use_gt_pelvis is false "
                              "(the cuboid root must come from estimates); set the path or use_gt_pelvis: true")
    if errors:
        raise ConfigError("; ".join(errors))
    if vn.use_gt_pelvis:
        unused = [f"{s}.pred_results_path" for s in ("train", "val") if getattr(config, s).pred_results_path]
        if unused:
            logger.warning("%s: unused, model.volume_net.use_gt_pelvis is true (the ground-truth pelvis is the "
                           "cuboid root)", " and ".join(unused))


# --------------------------------------------------------------------------- files and overrides


class _BoundedLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses documents expanding to more than :data:`MAX_CONFIG_NODES` nodes.

    Aliases are not copied when loaded, but everything that walks the result (type checks, ``repr`` in
    errors) expands them, so an alias bomb of a few hundred bytes would cost gigabytes.
    """

    def construct_document(self, node: yaml.Node) -> Any:
        sizes: dict[int, int] = {}

        def expanded(n: yaml.Node, depth: int = 0) -> int:
            if id(n) in sizes:
                return sizes[id(n)]
            if depth > 100:
                raise ConfigError("nested more than 100 levels deep")
            size = 1
            if isinstance(n, yaml.SequenceNode):
                size += sum(expanded(c, depth + 1) for c in n.value)
            elif isinstance(n, yaml.MappingNode):
                size += sum(expanded(k, depth + 1) + expanded(c, depth + 1) for k, c in n.value)
            sizes[id(n)] = size
            if size > MAX_CONFIG_NODES:
                raise ConfigError(f"expands to more than {MAX_CONFIG_NODES} values (YAML aliases?); a config has a "
                                  "few hundred")
            return size

        expanded(node)
        return super().construct_document(node)


def _read_yaml(path: Path) -> Any:
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path}: {size} bytes, too large for a config file (at most {MAX_CONFIG_BYTES})")
        raw = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the config file ({e.strerror or e})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start}); expected a YAML file") from None
    try:
        data = yaml.load(text, Loader=_BoundedLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({_show(str(e).splitlines()[0], 200)})") from None
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply for a config file") from None
    if data is None:
        raise ConfigError(f"{path}: empty config file; expected a YAML mapping (see configs/tiny_cpu.yaml)")
    return data


def apply_overrides(config: ExperimentConfig, overrides: Sequence[str]) -> ExperimentConfig:
    """Apply ``a.b.c=value`` overrides (value parsed as YAML) and return a new, validated config."""
    data: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {_show(item)}: expected key=value, e.g. train.batch_size=8")
        try:
            value = yaml.load(raw, Loader=_BoundedLoader) if raw.strip() else ""  # noqa: S506
        except ConfigError as e:
            raise ConfigError(f"--set {key}: {e}") from None
        except yaml.YAMLError:
            value = raw
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {_show(item)}: {part} is set both as a value and as a section")
        node[parts[-1]] = value
    return config_from_dict(data, base=config) if data else config


def shipped_configs() -> dict[str, Path]:
    """The configs shipped with the package, by name (``{"tiny_cpu": .../tiny_cpu.yaml, ...}``)."""
    folder = resources.files("ctxpose") / "configs"
    return {Path(p.name).stem: Path(str(p)) for p in folder.iterdir() if p.name.endswith(".yaml")}


def resolve_config_path(path: str | Path) -> Path:
    """A config file: the path as given, or a shipped config's name (``tiny_cpu``, ``human36m_contextpose``).

    Raises:
        ConfigError: neither a file nor a shipped config's name.
    """
    p = Path(path)
    if p.is_file():
        return p
    shipped = shipped_configs()
    if p.suffix == "" and len(p.parts) == 1 and p.name in shipped:
        return shipped[p.name]
    hint = f" (shipped configs: {', '.join(sorted(shipped))})" if shipped else ""
    what = "is a folder, not a config file" if p.is_dir() else "config file not found"
    raise ConfigError(f"{path}: {what}{hint}")


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """Load a config file (ours or the original ContextPose YAML), apply overrides, validate.

    Args:
        path: YAML file or a shipped config's name; ``None`` gives the defaults (the paper's model and
            schedule with the ground-truth pelvis).
        overrides: ``key=value`` strings, e.g. ``["train.batch_size=8"]``.

    Raises:
        ConfigError: missing, unreadable or oversized file, unknown key, wrong type, broken rule.
    """
    if path is None:
        config = ExperimentConfig()
    else:
        path = resolve_config_path(path)
        data = _read_yaml(path)
        try:
            if is_triangulation_config(data):
                data = convert_triangulation_config(data, leaf_paths())
            elif is_original_config(data):
                data = convert_original_config(data, leaf_paths())
            config = config_from_dict(data)
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None
    return apply_overrides(config, overrides)


def missing_paths(config: ExperimentConfig) -> list[str]:
    """The files and folders this config will read that do not exist, as ``"key: path"`` strings.

    Only paths the settings use are checked: the model checkpoint when ``model.init_weights``, else the
    backbone checkpoint when ``model.backbone.init_weights``; pelvis estimates when ``use_gt_pelvis`` is off.
    """
    m, d = config.model, config.dataset
    wanted: list[tuple[str, str | None, bool]] = [
        ("dataset.root", d.root, True),
        ("dataset.limb_length_path", d.limb_length_path, False),
        ("dataset.train_labels_path", d.train_labels_path, False),
        ("dataset.val_labels_path", d.val_labels_path, False),
    ]
    if m.init_weights and m.checkpoint:
        wanted.append(("model.checkpoint", m.checkpoint, False))
    elif m.backbone.init_weights and m.backbone.checkpoint:
        wanted.append(("model.backbone.checkpoint", m.backbone.checkpoint, False))
    if not m.volume_net.use_gt_pelvis:
        wanted += [("train.pred_results_path", config.train.pred_results_path, False),
                   ("val.pred_results_path", config.val.pred_results_path, False)]
    out = []
    for key, value, is_dir in wanted:
        if value and not (Path(value).is_dir() if is_dir else Path(value).is_file()):
            out.append(f"{key}: {'folder' if is_dir else 'file'} not found: {value}")
    return out


def save_config(config: ExperimentConfig, path: str | Path) -> None:
    """Write the resolved config as YAML (atomically)."""
    from ctxpose.utils.io import atomic_write_text

    atomic_write_text(Path(path), yaml.safe_dump(config_to_dict(config), sort_keys=False))
