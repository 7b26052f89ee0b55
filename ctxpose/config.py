"""Typed experiment configuration.

Frozen dataclasses, loaded from our YAML or from the original ContextPose experiment YAML
(see :mod:`ctxpose.config_compat`). Overrides (``a.b=value``) return a new object; nothing
is global or mutable. Unknown keys and wrong types raise :class:`~ctxpose.errors.ConfigError`
naming the key, with the closest valid key for typos.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from ctxpose.config_compat import convert_original_config, is_original_config
from ctxpose.errors import ConfigError


@dataclass(frozen=True)
class BackboneConfig:
    """Pose-ResNet backbone (Xiao et al. 2018) with a 3-layer deconv head."""

    num_layers: int = 152  # 18, 34, 50, 101 or 152
    style: Literal["simple", "caffe"] = "simple"
    num_final_layer_channel: int | None = None  # heatmap channels, one per joint; None: the skeleton's count
    init_weights: bool = True
    fix_weights: bool = False
    checkpoint: str | None = None  # backbone-only weights (original: data/pretrained/human36m/backbone_weights.pth)


@dataclass(frozen=True)
class VolumeNetConfig:
    """Unprojection, V2V network with the limb-length-prior attention, soft-argmax."""

    volume_aggregation_method: Literal["softmax", "sum", "max", "conf", "conf_norm"] = "softmax"
    use_gt_pelvis: bool = False
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
class ModelConfig:
    name: Literal["vol"] = "vol"
    kind: Literal["mpii", "coco"] = "mpii"  # joint order; selects the root joint and the rotation axis
    skeleton: str = "contextpose17"
    image_shape: tuple[int, int] = (384, 384)  # (H, W) of the input crop, px
    heatmap_shape: tuple[int, int] = (96, 96)  # (H, W); the original always uses a quarter of the input
    heatmap_softmax: bool = True
    heatmap_multiplier: float = 100.0
    init_weights: bool = True
    checkpoint: str | None = None  # full model weights (ours or the original's)
    transfer_cmu_to_human36m: bool = False
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    volume_net: VolumeNetConfig = field(default_factory=VolumeNetConfig)


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
    grad_clip: float = 0.0  # 0 disables; the original clips at grad_clip / volume_net_lr


@dataclass(frozen=True)
class DatasetConfig:
    kind: Literal["human36m"] = "human36m"
    root: str = "data/human36m/processed"  # processed folder (ours or the original's layout)
    # layout of root: "ctxpose" (labels.npz + crops), "original" (the original repository's), "auto": detect
    format: Literal["auto", "ctxpose", "original"] = "auto"
    extra_root: str = "data/human36m/extra"
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
    erase: bool = False
    shuffle: bool = True
    randomize_n_views: bool = True
    min_n_views: int = 1
    max_n_views: int = 1
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
    checkpoint_every_epochs: int = 1
    vis_freq: int = 1000  # steps between TensorBoard image summaries
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


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and convert lists to tuples, ints to floats."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping of {_type_name(tp)} fields, got {value!r}")
        return _build(tp, value, key + ".")
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
        raise ConfigError(errors[0] if len(errors) == 1 else f"{key}: {value!r} does not match {tp}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(repr(a) for a in args)}")
        return value
    if origin is tuple:
        if isinstance(value, str) or not isinstance(value, Sequence):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{key}: expected a list of {len(args)} items, got {value!r}")
        return tuple(_convert(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config annotation {tp} for {key}")  # a bug in this module


def _unknown_key(cls: type, key: str, prefix: str) -> ConfigError:
    names = [f.name for f in dataclasses.fields(cls)]
    close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
    hint = f", did you mean {prefix}{close[0]}?" if close else f" (valid: {', '.join(names)})"
    return ConfigError(f"{prefix}{key}: unknown key{hint}")


def _build(cls: type, data: Mapping[str, Any], prefix: str = "", base: Any = None) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in known:
            raise _unknown_key(cls, str(key), prefix)
    kwargs = {}
    for name in known:
        if name in data:
            sub_base = getattr(base, name) if base is not None else None
            if dataclasses.is_dataclass(hints[name]) and isinstance(data[name], Mapping):
                kwargs[name] = _build(hints[name], data[name], f"{prefix}{name}.", sub_base)
            else:
                kwargs[name] = _convert(data[name], hints[name], prefix + name)
        elif base is not None:
            kwargs[name] = getattr(base, name)
    return cls(**kwargs)


def config_from_dict(data: Mapping[str, Any], base: ExperimentConfig | None = None) -> ExperimentConfig:
    """Build an :class:`ExperimentConfig` from a nested mapping; missing keys keep ``base``'s values."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"config: expected a mapping at the top level, got {type(data).__name__}")
    return _build(ExperimentConfig, data, "", base)


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain nested dict (tuples as lists) for YAML/JSON output."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v

    return plain(config)


def apply_overrides(config: ExperimentConfig, overrides: Sequence[str]) -> ExperimentConfig:
    """Apply ``a.b.c=value`` overrides (value parsed as YAML) and return a new config."""
    data: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. train.batch_size=8")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: {part} is set both as a value and as a section")
        node[parts[-1]] = value
    return config_from_dict(data, base=config) if data else config


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """Load a config file (ours or the original ContextPose YAML) and apply overrides.

    Args:
        path: YAML file; ``None`` gives the defaults (the paper setting).
        overrides: ``key=value`` strings, e.g. ``["train.batch_size=8"]``.

    Raises:
        ConfigError: missing or unreadable file, unknown key, wrong type.
    """
    config = ExperimentConfig()
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
        data = data or {}
        try:
            if is_original_config(data):
                data = convert_original_config(data)
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
