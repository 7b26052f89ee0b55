"""The fast attention block against the original's dense formulation (tests/reference)."""

import pytest
import torch

from ctxpose.models.context_attention import AttentionConv3D
from ctxpose.skeleton import get_skeleton
from tests.reference.original_ops import reference_attention

SK = get_skeleton("contextpose17")


def make_block(channels=51, seed=0, spacing="original", full_size=None, temperature=1500.0, cuboid=2500.0):
    g = torch.Generator().manual_seed(seed)
    mean = torch.rand(SK.num_bones, generator=g) * 300 + 100
    std = torch.rand(SK.num_bones, generator=g) * 20 + 5
    torch.manual_seed(seed)
    block = AttentionConv3D(channels, channels, SK, mean, std, cuboid, temperature, spacing=spacing,
                            full_size=full_size)
    for p in block.parameters():  # O(1) weights so every path matters
        torch.nn.init.normal_(p, 0, 0.5)
    return block


@pytest.mark.parametrize("shape", [(4, 4, 4), (3, 5, 4)])
def test_attention_matches_dense_reference_forward_and_backward(shape):
    block = make_block()
    x = torch.randn(2, 51, *shape, requires_grad=True)
    out, att = block(x)
    ref_out, ref_att = reference_attention(block, x)
    # float32 sums over N terms in a different order: a few ulps relative
    torch.testing.assert_close(att, ref_att, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(out, ref_out, rtol=1e-4, atol=1e-5)
    grad = torch.randn_like(out)
    gx, gw = torch.autograd.grad((out * grad).sum(), [x, block.joint_weight])
    rx, rw = torch.autograd.grad((ref_out * grad).sum(), [x, block.joint_weight])
    torch.testing.assert_close(gx, rx, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(gw, rw, rtol=1e-4, atol=1e-5)


def test_exact_spacing_uses_pooled_voxel_size():
    block = make_block(spacing="exact", full_size=16)
    assert block.grid_spacing((4, 4, 4)) == pytest.approx((4 * 2500 / 15,) * 3)
    assert make_block().grid_spacing((4, 4, 4)) == pytest.approx((2500 / 3,) * 3)
    x = torch.randn(1, 51, 4, 4, 4)
    out, _ = block(x)
    ref, _ = reference_attention(block, x)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


def test_prior_cache_is_keyed_by_statistics_temperature_and_shape():
    block = make_block()
    x = torch.randn(1, 51, 4, 4, 4)
    out1, _ = block(x)
    w1 = block.prior_weight((4, 4, 4), x.device)
    assert block.prior_weight((4, 4, 4), x.device) is w1  # cached
    block.set_limb_prior(block.limb_mean * 1.5, block.limb_std)
    out2, _ = block(x)
    assert block.prior_weight((4, 4, 4), x.device) is not w1
    ref2, _ = reference_attention(block, x)
    torch.testing.assert_close(out2, ref2, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(out1, out2)
    block.temperature = 10.0
    out3, _ = block(x)
    ref3, _ = reference_attention(block, x)
    torch.testing.assert_close(out3, ref3, rtol=1e-4, atol=1e-5)


def test_state_dict_keeps_original_per_joint_conv_keys():
    block = make_block()
    sd = block.state_dict()
    assert "joint_weight" not in sd
    assert [k for k in sd if k.startswith("convlist.")] == [f"convlist.{j}.weight" for j in range(SK.num_joints)]
    assert sd["convlist.0.weight"].shape == (3, 51, 1, 1, 1)
    other = make_block(seed=1)
    other.load_state_dict(sd, strict=True)
    torch.testing.assert_close(other.joint_weight, block.joint_weight)


def test_rejects_channels_not_multiple_of_joints():
    with pytest.raises(ValueError, match="multiples of the joint count"):
        AttentionConv3D(50, 50, SK, torch.ones(16), torch.ones(16), 2500.0, 1500.0)
