"""Loading the original's released checkpoints: key layout, `module.` prefix, weights-only, clear errors."""

import json
from pathlib import Path

import pytest
import torch

from ctxpose.config import load_config
from ctxpose.errors import CheckpointError
from ctxpose.models import build_model, load_backbone_checkpoint, load_checkpoint
from ctxpose.skeleton import LimbPrior, get_skeleton

SK = get_skeleton("contextpose17")
PRIOR = LimbPrior(torch.full((SK.num_bones,), 300.0), torch.full((SK.num_bones,), 20.0))
ORIGINAL_KEYS = Path(__file__).parents[1] / "data" / "original_state_dict_keys_paper.json"


def tiny(seed=0):
    cfg = load_config(None, ["model.backbone.num_layers=18", "model.volume_net.volume_size=16"])
    torch.manual_seed(seed)
    return build_model(cfg, PRIOR)


def test_paper_model_has_exactly_the_original_state_dict_layout():
    expected = json.loads(ORIGINAL_KEYS.read_text())["keys"]
    with torch.device("meta"):
        model = build_model(load_config(None), PRIOR)
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert sorted(ours) == sorted(expected)
    assert ours == expected


@pytest.mark.parametrize("prefix", ["", "module."])
def test_original_style_checkpoint_loads_weights_only(tmp_path, prefix):
    src = tiny(seed=1)
    path = tmp_path / "weights.pth"
    torch.save({prefix + k: v for k, v in src.state_dict().items()}, path)
    torch.load(path, weights_only=True)  # the file itself is a plain weights-only checkpoint
    dst = tiny(seed=2)
    load_checkpoint(dst, path)
    for (k, a), b in zip(src.state_dict().items(), dst.state_dict().values(), strict=True):
        assert torch.equal(a, b), k


def test_mismatch_lists_missing_and_unexpected_keys_in_one_line(tmp_path):
    sd = tiny().state_dict()
    sd.pop("volume_net.output_layer.bias")
    sd["volume_net.extra.weight"] = torch.zeros(1)
    path = tmp_path / "bad.pth"
    torch.save(sd, path)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(tiny(), path)
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg
    assert "1 missing (volume_net.output_layer.bias)" in msg and "1 unexpected (volume_net.extra.weight)" in msg


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"model": tiny().state_dict(), "extra": Path("x")}, path)  # a non-tensor global
    with pytest.raises(CheckpointError, match=r"evil\.pth: refused: loading it would call pathlib\.\w*Path") as e:
        load_checkpoint(tiny(), path)
    assert "weights_only" not in str(e.value)  # never suggest the unsafe workaround


def test_backbone_checkpoint_with_other_joint_count_reinitialises_final_layer(tmp_path):
    src = tiny(seed=3).backbone.state_dict()
    src["final_layer.weight"] = torch.randn(20, 256, 1, 1)
    src["final_layer.bias"] = torch.randn(20)
    path = tmp_path / "backbone.pth"
    torch.save({"state_dict": {"module.backbone." + k: v for k, v in src.items()}}, path)
    model = tiny(seed=4)
    load_backbone_checkpoint(model, path)
    got = model.backbone.state_dict()
    assert torch.equal(got["layer1.0.conv1.weight"], src["layer1.0.conv1.weight"])
    assert torch.equal(got["final_layer.weight"], src["final_layer.weight"][: SK.num_joints])


def test_load_model_builds_the_config_network_with_its_prior_and_loads_the_weights(tmp_path):
    import h5py

    from ctxpose.models import load_model

    limbs = tmp_path / "limbs.h5"
    with h5py.File(limbs, "w") as f:  # the original file has one value per ContextPose bone, and more are ignored
        f["mean"] = torch.arange(SK.num_bones + 2.0).numpy() + 200
        f["std"] = torch.full((SK.num_bones + 2,), 9.0).numpy()
    cfg = load_config(None, ["model.backbone.num_layers=18", "model.volume_net.volume_size=16",
                             f"dataset.limb_length_path={limbs}"])
    src = tiny(seed=3)
    torch.save({"model": src.state_dict()}, tmp_path / "run.pt")  # a run checkpoint
    model = load_model(cfg, tmp_path / "run.pt", "cpu")
    assert not model.training
    for key, value in src.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value, rtol=0, atol=0, msg=key)
    # the prior (not in the weights) is the config's file, the skeleton's first 16 values
    means = [b for name, b in model.named_buffers() if name.endswith("limb_mean")]
    assert means and all(torch.equal(m, torch.arange(SK.num_bones) + 200.0) for m in means)
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_model(cfg, tmp_path / "missing.pt")
