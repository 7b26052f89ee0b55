"""Trainer behaviour on CPU with the stand-in model: optimiser groups, frozen backbone, gradient clipping,
non-finite steps, bf16 autocast."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ctxpose.config import load_config
from ctxpose.engine.trainer import TrainingDivergedError, build_optimizers, initial_model, train
from ctxpose.errors import ConfigError
from tests.unit.engine_standins import StandinModel, standin_losses, standin_model, standin_sets

ROOT = Path(__file__).resolve().parents[2]


def _cfg(*extra: str):
    return load_config(ROOT / "configs/tiny_cpu.yaml", [
        "train.n_objects_per_epoch=8", "train.n_epochs=1", "train.batch_size=4", "train.vis_freq=0", *extra])


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def _init() -> dict[str, torch.Tensor]:
    return standin_model().state_dict()


def _train(cfg, run_dir: Path, *, loss_fn=standin_losses, validate: bool = False, dropout: bool = False, **kw):
    """``train`` on the stand-ins: the model, its loss, 24 training samples (and 10 to validate on)."""
    train_set, val_set = standin_sets()
    return train(cfg, standin_model(dropout), train_set, val_set if validate else None, run_dir,
                 loss_fn=loss_fn, **kw)


def test_optimizer_groups_follow_the_paper() -> None:
    cfg = _cfg("train.backbone_lr=0.1", "train.volume_net_lr=0.2", "train.process_features_lr=0.3",
               "train.backbone_lr_step=[2]", "train.backbone_lr_factor=0.5")
    model = StandinModel()
    opts, scheds = build_optimizers(model, cfg)
    assert sorted(opts) == ["backbone", "volume"] and isinstance(opts["volume"], torch.optim.Adam)
    ids = lambda m: {id(p) for p in m.parameters()}  # noqa: E731
    assert {id(p) for p in opts["backbone"].param_groups[0]["params"]} == ids(model.backbone)
    vol = opts["volume"].param_groups
    assert ({id(p) for p in vol[0]["params"]}, vol[0]["lr"]) == (ids(model.volume_net), 0.2)
    assert ({id(p) for p in vol[1]["params"]}, vol[1]["lr"]) == (ids(model.process_features), 0.3)
    for _ in range(2):
        opts["backbone"].step()  # no gradients: a no-op that keeps the optimiser-then-scheduler order
        scheds["backbone"].step()
    assert opts["backbone"].param_groups[0]["lr"] == pytest.approx(0.05)
    frozen = build_optimizers(model, _cfg("model.backbone.fix_weights=true"))[0]
    assert sorted(frozen) == ["volume"]


def test_frozen_backbone_does_not_move(tmp_path: Path) -> None:
    res = _train(_cfg("model.backbone.fix_weights=true"), tmp_path)
    after, before = _weights(res.checkpoint), _init()
    assert torch.equal(after["backbone.0.weight"], before["backbone.0.weight"])
    assert not torch.equal(after["volume_net.1.weight"], before["volume_net.1.weight"])


def test_gradient_clipping_bounds_the_step(tmp_path: Path) -> None:
    # SGD with every lr = 0.1 and clip = grad_clip / volume_net_lr: the update norm is at most grad_clip
    cfg = _cfg("train.optimizer=SGD", "train.backbone_lr=0.1", "train.volume_net_lr=0.1",
               "train.process_features_lr=0.1", "loss.grad_clip=0.001", "train.n_objects_per_epoch=4")
    res = _train(cfg, tmp_path / "clip")
    after, before = _weights(res.checkpoint), _init()
    step = torch.sqrt(sum(((after[k] - before[k]).double() ** 2).sum() for k in before if k.endswith(("weight",
                                                                                                          "bias"))))
    assert 0.0009 < float(step) <= 0.001 + 1e-6  # the raw gradient is far larger, so clipping is active


def nan_at_second_call(out, keypoints_3d, validity, cfg) -> dict[str, torch.Tensor]:
    nan_at_second_call.calls += 1
    losses = standin_losses(out, keypoints_3d, validity, cfg)
    if nan_at_second_call.calls == 2:
        losses["total"] = losses["total"] * float("inf")
    return losses


def test_non_finite_step_is_skipped_and_counted(tmp_path: Path) -> None:
    nan_at_second_call.calls = 0
    res = _train(_cfg("train.n_objects_per_epoch=12"), tmp_path, loss_fn=nan_at_second_call)
    assert (res.steps, res.nan_steps) == (3, 1)
    lines = (tmp_path / "scalars.jsonl").read_text().splitlines()
    assert sum('"train/loss/total"' in line for line in lines) == 2  # the skipped step logs no loss


def test_abort_after_max_nan_steps(tmp_path: Path) -> None:
    def always_nan(out, k, v, cfg):
        return {"total": standin_losses(out, k, v, cfg)["total"] * float("nan")}

    with pytest.raises(TrainingDivergedError, match="not finite for 2 steps in a row"):
        _train(_cfg("train.max_nan_steps=2", "train.n_objects_per_epoch=16"), tmp_path, loss_fn=always_nan)


def test_bf16_autocast_on_cpu(tmp_path: Path) -> None:
    res = _train(_cfg(), tmp_path, amp="bf16", validate=True, dropout=True)
    assert res.steps == 2 and torch.isfinite(torch.tensor(res.metrics[0]["val"]["mpjpe"]))
    with pytest.raises(ConfigError, match="fp16: needs a CUDA device"):
        _train(_cfg(), tmp_path / "fp16", amp="fp16")


def test_initial_weights_from_full_or_backbone_checkpoint(tmp_path: Path) -> None:
    import h5py

    from ctxpose.models import build_model
    from ctxpose.skeleton import LimbPrior, get_skeleton

    n = get_skeleton("contextpose17").num_bones
    prior_file = tmp_path / "limbs.h5"
    with h5py.File(prior_file, "w") as f:
        f["mean"], f["std"] = np.full(n, 300.0), np.full(n, 20.0)
    small = ["model.image_shape=[32,32]", f"dataset.limb_length_path={prior_file}"]
    torch.manual_seed(1)
    source = build_model(_cfg(*small).model, LimbPrior(torch.full((n,), 300.0), torch.full((n,), 20.0)))
    full = tmp_path / "weights.pth"  # the original's released layout: DataParallel "module." keys
    torch.save({"model": {f"module.{k}": v for k, v in source.state_dict().items()}}, full)
    backbone = tmp_path / "backbone.pth"
    torch.save({f"backbone.{k}": v for k, v in source.backbone.state_dict().items()}, backbone)

    target = initial_model(_cfg(*small, "model.init_weights=true", f"model.checkpoint={full}"))
    for k, v in source.state_dict().items():
        assert torch.equal(target.state_dict()[k], v), k

    plain = initial_model(_cfg(*small))  # train.seed: the same initial weights every time
    first = next(iter(source.state_dict()))
    assert not torch.equal(plain.state_dict()[first], source.state_dict()[first])  # so loading shows
    target = initial_model(_cfg(*small, "model.backbone.init_weights=true",
                                    f"model.backbone.checkpoint={backbone}"))
    for k, v in source.backbone.state_dict().items():
        assert torch.equal(target.backbone.state_dict()[k], v), k
    for k, v in plain.volume_net.state_dict().items():
        assert torch.equal(target.volume_net.state_dict()[k], v), k
    resumed = initial_model(_cfg(*small, "model.init_weights=true", f"model.checkpoint={full}"),
                                initial_weights=False)  # a resumed run loads its own checkpoint instead
    assert torch.equal(resumed.state_dict()[first], plain.state_dict()[first])


def recording_losses(out, keypoints_3d, validity, cfg) -> dict[str, torch.Tensor]:
    import os

    recording_losses.seen.append((torch.are_deterministic_algorithms_enabled(),
                                  os.environ.get("CUBLAS_WORKSPACE_CONFIG")))
    return standin_losses(out, keypoints_3d, validity, cfg)


@pytest.mark.parametrize("deterministic", [True, False])
def test_deterministic_acts_during_the_run_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                deterministic: bool) -> None:
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    recording_losses.seen = []
    _train(_cfg(f"train.deterministic={str(deterministic).lower()}"), tmp_path, loss_fn=recording_losses)
    expected = (True, ":4096:8") if deterministic else (False, None)
    assert recording_losses.seen == [expected, expected]  # both steps
    assert not torch.are_deterministic_algorithms_enabled()  # restored after the run
    import os

    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ


def losses_with_put(out, keypoints_3d, validity, cfg) -> dict[str, torch.Tensor]:
    """The stand-in losses plus ``Tensor.put_``, which has no deterministic kernel on any device (torch 2.13)."""
    losses = standin_losses(out, keypoints_3d, validity, cfg)
    torch.zeros(2).put_(torch.tensor([0]), torch.tensor([1.0]))
    return losses


@pytest.mark.parametrize("deterministic", [True, False])
def test_an_operation_without_a_deterministic_kernel_is_one_line(tmp_path: Path, deterministic: bool) -> None:
    """On CUDA the unprojection's grid_sample backward is such an operation (tests/unit/test_gpu.py)."""
    cfg = _cfg(f"train.deterministic={str(deterministic).lower()}")
    if not deterministic:  # without the setting PyTorch does not complain and the run trains
        assert _train(cfg, tmp_path, loss_fn=losses_with_put).steps == 2
        return
    with pytest.raises(ConfigError, match=r"^train.deterministic: PyTorch has no deterministic kernel for put_ "
                                          r"\(on CUDA the unprojection's grid_sample backward has none\)"):
        _train(cfg, tmp_path, loss_fn=losses_with_put)
    assert not torch.are_deterministic_algorithms_enabled()  # restored on the way out


def test_frozen_backbone_keeps_its_batch_norm_statistics(tmp_path: Path) -> None:
    """The original puts a frozen backbone in eval mode: its running statistics must not move."""
    res = _train(_cfg("model.backbone.fix_weights=true"), tmp_path)
    after, before = _weights(res.checkpoint), _init()
    assert torch.equal(after["backbone.1.running_mean"], before["backbone.1.running_mean"])
    assert int(after["backbone.1.num_batches_tracked"]) == 0
    moving = _train(_cfg(), tmp_path / "trained")
    assert int(_weights(moving.checkpoint)["backbone.1.num_batches_tracked"]) == 2


def test_max_steps_below_one_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--max-steps 0: expected at least 1"):
        _train(_cfg(), tmp_path, max_steps=0)


def test_freeze_epochs_keeps_the_backbone_bit_identical_then_trains_it(tmp_path: Path) -> None:
    """The released 3DHP schedule: backbone frozen (weights and batch norm) for the first epochs, then trained."""
    cfg = _cfg("model.backbone.freeze_epochs=2", "train.n_epochs=3")
    before = _init()
    frozen = _train(cfg, tmp_path / "a", max_steps=4)  # epochs 0, 1
    after_frozen = _weights(frozen.checkpoint)
    for key in ("backbone.0.weight", "backbone.1.weight", "backbone.1.running_mean", "backbone.1.running_var"):
        assert torch.equal(after_frozen[key], before[key]), key
    assert not torch.equal(after_frozen["volume_net.1.weight"], before["volume_net.1.weight"])
    resumed = _train(cfg, tmp_path / "a", resume=frozen.checkpoint)
    trained = _weights(resumed.checkpoint)  # epoch 2: end to end
    assert not torch.equal(trained["backbone.0.weight"], before["backbone.0.weight"])
    assert int(trained["backbone.1.num_batches_tracked"]) == 2


def test_freeze_epochs_with_fix_weights_is_refused() -> None:
    with pytest.raises(ConfigError, match="freeze_epochs: the backbone is frozen for the whole run already"):
        _cfg("model.backbone.freeze_epochs=3", "model.backbone.fix_weights=true")


def test_a_backbone_only_model_gets_one_group_at_the_backbone_lr() -> None:
    """learnable-triangulation's algebraic model has no volume: all of it trains at train.backbone_lr (the
    original's single optimiser), and a frozen backbone would leave nothing to train."""
    model = torch.nn.Module()
    model.backbone = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    opts, scheds = build_optimizers(model, _cfg("train.backbone_lr=0.1"))
    assert sorted(opts) == sorted(scheds) == ["backbone"]
    [group] = opts["backbone"].param_groups
    assert {id(p) for p in group["params"]} == {id(p) for p in model.parameters()} and group["lr"] == 0.1
    with pytest.raises(ConfigError, match="model.backbone.fix_weights: the model is a backbone only"):
        build_optimizers(model, _cfg("model.backbone.fix_weights=true"))
