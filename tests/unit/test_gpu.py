"""The CUDA paths against the CPU: the network's forward and backward, bf16/fp16 autocast, channels-last, the NCCL
launch path with SyncBatchNorm, fp16 training with the GradScaler, pinned-memory loading, deterministic kernels.

Tests marked ``gpu`` run only where CUDA is present (tests/conftest.py skips them elsewhere). The network is the
tiny real one (ResNet-18, 32-px crops, 16^3 volume, the context attention block) of tests/unit/test_model.py.
Tolerances come from what float32 itself does here: the same computation in float32 and float64 on the CPU
differs by at most the figures quoted at each bound (measured with these seeds and inputs), and two float32
results (CPU and CUDA, or two memory layouts) differ by at most the sum of their own errors.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from ctxpose.config import load_config
from ctxpose.data.datasets import Human36MDataset
from ctxpose.data.loaders import make_train_loader, set_loader_epoch
from ctxpose.engine import dist
from ctxpose.engine.checkpoint import read_run_checkpoint
from ctxpose.engine.evaluator import move_batch
from ctxpose.engine.launch import Layout, launch
from ctxpose.engine.trainer import train
from ctxpose.losses import compute_losses
from tests.unit.engine_standins import StandinDataset, StandinModel, standin_losses, standin_model
from tests.unit.test_model import J, camera_proj, tiny_model

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_model import to_channels_last  # noqa: E402  (the conversion the benchmarks time)

CUDA = pytest.param("cuda", marks=pytest.mark.gpu)


@pytest.fixture
def float32_kernels():
    """Plain float32 on CUDA: cuDNN convolutions default to TF32 (10-bit mantissa) on Ampere and later."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def step_inputs(batch: int = 4, seed: int = 10) -> dict[str, torch.Tensor]:
    """A batch of 32-px crops with cameras looking at roots ~100 mm from the origin and true joints around them."""
    g = torch.Generator().manual_seed(seed)
    roots = torch.randn(batch, 3, generator=g) * 100
    return {"images": torch.randn(batch, 1, 3, 32, 32, generator=g), "proj": camera_proj(batch, 1, f=40.0, size=32),
            "roots": roots, "gt": roots[:, None] + torch.randn(batch, J, 3, generator=g) * 200,
            "validity": torch.ones(batch, J), "rotation": torch.linspace(0, 3, batch)}


def training_step(model: nn.Module, cfg, inputs: dict[str, torch.Tensor], device: str, dtype=torch.float32):
    """Forward with the paper's three losses, then backward: (output, loss, {parameter: gradient on the CPU})."""
    model = model.to(device, dtype)
    x = {k: v.to(device, dtype) for k, v in inputs.items()}
    model.zero_grad(set_to_none=True)
    out = model(x["images"], x["proj"], x["roots"], x["rotation"])
    loss = compute_losses(out, x["gt"], x["validity"], cfg.loss, cfg.model.volume_net)["total"]
    loss.backward()
    return out, loss.detach().cpu(), {n: p.grad.cpu() for n, p in model.named_parameters() if p.grad is not None}


def gradient_errors(grads: dict[str, torch.Tensor], ref: dict[str, torch.Tensor]) -> dict[str, float]:
    """Per parameter ||g - ref|| / ||ref||, with a floor of 1e-6 of the whole gradient's norm: parameters whose
    gradient is zero in exact arithmetic (biases before a softmax or a batch norm) hold only rounding noise."""
    floor = 1e-6 * torch.cat([g.double().flatten() for g in ref.values()]).norm()
    return {n: float((grads[n].double() - g.double()).norm() / torch.clamp(g.double().norm(), min=floor))
            for n, g in ref.items()}


@pytest.mark.gpu
def test_forward_and_backward_on_cuda_equal_the_cpu(float32_kernels):
    cfg, model = tiny_model()  # eval mode: batch norm from its statistics, a well-conditioned step
    inputs = step_inputs()
    cpu_out, cpu_loss, cpu_grads = training_step(copy.deepcopy(model), cfg, inputs, "cpu")
    out, loss, grads = training_step(copy.deepcopy(model), cfg, inputs, "cuda")
    assert set(grads) == set(cpu_grads) and len(grads) > 50
    # float32 vs float64 on the CPU, this step: joints 0.0034 mm, volumes 1.3e-6, attention 1.8e-7 relative,
    # loss 2.8e-7 relative
    torch.testing.assert_close(out.keypoints_3d.cpu(), cpu_out.keypoints_3d, rtol=0, atol=0.05)
    torch.testing.assert_close(out.volumes.cpu(), cpu_out.volumes, rtol=0, atol=1e-5)
    torch.testing.assert_close(out.attention.cpu(), cpu_out.attention, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(loss, cpu_loss, rtol=1e-5, atol=0)
    # float32 vs float64 gradients of this step: at most 2.0e-3 of a parameter's gradient norm (the output
    # layer's bias, whose gradient is zero in exact arithmetic: rounding noise against the floor)
    errors = gradient_errors(grads, cpu_grads)
    worst = max(errors, key=errors.get)
    assert errors[worst] < 1e-2, (worst, errors[worst])


@pytest.mark.gpu
def test_training_mode_loss_on_cuda_equals_the_cpu(float32_kernels):
    """Batch statistics of 4 crops: the joints are ill-conditioned here (float32 vs float64 on the CPU: up to
    2 mm), the loss is not (float32 vs float64: 1.2e-5 relative at most over three model seeds)."""
    cfg, model = tiny_model()
    model.train()
    inputs = step_inputs()
    _, cpu_loss, _ = training_step(copy.deepcopy(model), cfg, inputs, "cpu")
    _, loss, _ = training_step(copy.deepcopy(model), cfg, inputs, "cuda")
    torch.testing.assert_close(loss, cpu_loss, rtol=2e-4, atol=0)


def autocast_setting(seed: int):
    """test_model's bf16 setting: moderately peaked volumes, subjects 3 m from the world origin."""
    _, model = tiny_model()
    with torch.no_grad():
        model.volume_net.output_layer.weight /= 10
    centre = (2000.0, -2000.0, 900.0)
    torch.manual_seed(seed)
    images = torch.randn(2, 1, 3, 32, 32)
    proj = camera_proj(2, 1, f=40.0, size=32, centre=centre)
    roots = torch.tensor(centre) + torch.randn(2, 3) * 100
    return model, (images, proj, roots)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype, mean_mm, max_mm", [
    # bf16 keeps 8 significant bits: CPU autocast moves these joints by 0.85-1.04 mm on average and 2.8 mm at
    # most over 8 input seeds; fp16 keeps 11: 0.07-0.10 mm, 0.35 mm at most. Bounds as test_model's bf16 test.
    (torch.bfloat16, 5.0, 15.0),
    (torch.float16, 1.0, 4.0),
])
def test_autocast_on_cuda_is_finite_and_close_to_float32(float32_kernels, dtype, mean_mm, max_mm):
    model, inputs = autocast_setting(seed=5)
    model = model.cuda()
    inputs = [x.cuda() for x in inputs]
    with torch.no_grad():
        ref = model(*inputs)
        with torch.autocast("cuda", dtype=dtype):
            out = model(*inputs)
    assert all(torch.isfinite(t).all() for t in (out.keypoints_3d, out.volumes, out.attention, out.heatmaps))
    assert out.keypoints_3d.dtype == out.volumes.dtype == torch.float32  # the read-out stays float32
    assert out.heatmaps.dtype == dtype  # the backbone did run in reduced precision
    torch.testing.assert_close(out.coord_volumes, ref.coord_volumes, rtol=0, atol=0)  # geometry is not autocast
    err = (out.keypoints_3d - ref.keypoints_3d).norm(dim=-1)
    assert err.mean() < mean_mm and err.max() < max_mm, err
    assert (ref.keypoints_3d - inputs[2][:, None]).norm(dim=-1).mean() > 50  # the joints are not just the root


@pytest.mark.parametrize("device", ["cpu", CUDA])
def test_channels_last_gives_the_same_outputs(float32_kernels, device):
    _, model = tiny_model()
    model = model.to(device)
    fast = to_channels_last(copy.deepcopy(model))
    conv2d, conv3d = fast.backbone.conv1.weight, fast.volume_net.front_layers[0].block[0].weight
    assert conv2d.is_contiguous(memory_format=torch.channels_last) and not conv2d.is_contiguous()
    assert conv3d.is_contiguous(memory_format=torch.channels_last_3d) and not conv3d.is_contiguous()
    inputs = step_inputs()
    args = (inputs["images"].to(device), inputs["proj"].to(device), inputs["roots"].to(device))
    with torch.no_grad():
        ref, out = model(*args), fast(*args)
    # two float32 layouts of the same sums (float32 vs float64 errs by 0.0034 mm and 1.3e-6 here; the two
    # layouts differ on the CPU by 0.0015 mm, 1.5e-6 and 4e-8 on heatmaps of up to 0.05)
    torch.testing.assert_close(out.keypoints_3d, ref.keypoints_3d, rtol=0, atol=0.05)
    torch.testing.assert_close(out.volumes, ref.volumes, rtol=0, atol=1e-5)
    torch.testing.assert_close(out.heatmaps, ref.heatmaps, rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------- NCCL and SyncBatchNorm


def bn_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 1),
                         nn.BatchNorm2d(4))


def bn_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """8 inputs and the weights of the loss sum(weights * output): a linear loss (a sum of squares of batch-normed
    outputs would be nearly constant, its gradients nearly zero and all rounding)."""
    g = torch.Generator().manual_seed(1)
    return torch.randn(8, 3, 6, 6, generator=g) * 2 + 0.5, torch.randn(8, 4, 6, 6, generator=g)


def _full_batch_reference() -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One process, the whole batch, float64 on the CPU: the output and the parameters' gradients."""
    net = bn_net().double().train()
    x, w = bn_batch()
    out = net(x.double())
    (out * w.double()).sum().backward()
    return out.detach(), {n: p.grad for n, p in net.named_parameters()}


@pytest.mark.gpu
def test_nccl_single_process_syncbn_and_ddp(monkeypatch, float32_kernels):
    """What one GPU can prove: ctxpose's setup in a 1-process torchrun environment picks cuda:0; an NCCL group
    all-reduces; the CUDA conversion gives nn.SyncBatchNorm, which under DDP (world size 1) equals the full batch."""
    import torch.distributed as tdist

    for key, value in {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(key, value)
    env, device = dist.setup_process("cuda")
    assert (env.rank, env.world_size, env.source, str(device)) == (0, 1, "torchrun", "cuda:0")
    tdist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{dist.free_port()}", rank=0, world_size=1)
    try:
        x = torch.arange(4.0, device=device)
        tdist.all_reduce(x)
        assert x.tolist() == [0.0, 1.0, 2.0, 3.0]
        net = dist.convert_sync_batchnorm(bn_net(), device).to(device).train()
        assert sum(isinstance(m, nn.SyncBatchNorm) for m in net.modules()) == 2
        assert set(net.state_dict()) == set(bn_net().state_dict())  # checkpoint keys unchanged
        ddp = nn.parallel.DistributedDataParallel(net, device_ids=[device.index])
        x, w = bn_batch()
        out = ddp(x.to(device))
        (out * w.to(device)).sum().backward()
        ref_out, ref_grads = _full_batch_reference()
        # float32 vs float64 here (CPU, Gloo DDP): outputs 1e-6 apart, gradients 2.5e-5 (of up to 115)
        torch.testing.assert_close(out.detach().cpu().double(), ref_out, rtol=1e-4, atol=1e-4)
        for name, p in net.named_parameters():
            torch.testing.assert_close(p.grad.cpu().double(), ref_grads[name], rtol=1e-4, atol=1e-3, msg=name)
    finally:
        tdist.destroy_process_group()


def _two_gpu_worker() -> dict:
    """Each rank: its half of the batch through SyncBatchNorm + DDP on its own GPU (ctxpose's NCCL path)."""
    torch.backends.cudnn.allow_tf32 = False  # plain float32, as the float32_kernels fixture
    env, device = dist.setup_process("cuda")
    assert dist.get_world_size() == 2 and torch.distributed.get_backend() == "nccl"
    net = dist.convert_sync_batchnorm(bn_net(), device).to(device).train()
    ddp = nn.parallel.DistributedDataParallel(net, device_ids=[device.index])
    x, w = (t.chunk(2)[env.rank].to(device) for t in bn_batch())
    out = ddp(x)
    (out * w).sum().backward()  # DDP averages the ranks' gradients: the full batch's gradient / 2
    total = dist.all_reduce_sum(torch.tensor([float(env.rank + 1)], device=device)).item()
    gathered = dist.all_gather_object({"rank": env.rank})
    return {"out": out.detach().cpu(), "grads": {n: p.grad.cpu() for n, p in net.named_parameters()},
            "total": total, "gathered": gathered, "device": str(device)}


@pytest.mark.gpu
@pytest.mark.ddp
def test_two_gpus_nccl_syncbn_equals_one_process_with_the_whole_batch():
    if torch.cuda.device_count() < 2:
        pytest.skip("needs 2 CUDA devices")
    results = launch(_two_gpu_worker, layout=Layout(2))
    assert [results[r]["device"] for r in (0, 1)] == ["cuda:0", "cuda:1"]
    assert results[0]["total"] == results[1]["total"] == 3.0
    assert results[0]["gathered"] == [{"rank": 0}, {"rank": 1}]
    ref_out, ref_grads = _full_batch_reference()
    out = torch.cat([results[0]["out"], results[1]["out"]]).double()
    torch.testing.assert_close(out, ref_out, rtol=1e-4, atol=1e-4)
    for name, g in ref_grads.items():
        for r in (0, 1):
            torch.testing.assert_close(results[r]["grads"][name].double() * 2, g, rtol=1e-4, atol=1e-3, msg=name)


# --------------------------------------------------------------------------- training and loading on CUDA


@pytest.mark.gpu
def test_fp16_training_on_cuda_uses_the_grad_scaler(tmp_path: Path):
    cfg = load_config(ROOT / "configs/tiny_cpu.yaml", ["train.batch_size=4", "train.n_epochs=1", "train.vis_freq=0"])
    result = train(cfg, standin_model(), StandinDataset(24), None, tmp_path / "run", "cuda", amp="fp16", max_steps=3,
                   loss_fn=standin_losses)
    assert result.steps == 3 and result.nan_steps == 0
    payload = read_run_checkpoint(result.checkpoint)
    assert payload["scaler"]["scale"] > 0  # an enabled GradScaler saved its state
    torch.manual_seed(cfg.train.seed)
    init = StandinModel().state_dict()
    trained = payload["model"]
    assert all(torch.isfinite(v).all() for v in trained.values() if v.is_floating_point())
    assert not torch.equal(trained["volume_net.1.weight"], init["volume_net.1.weight"])


@pytest.mark.gpu
def test_pinned_loader_batches_arrive_on_the_gpu(ours):
    dataset = Human36MDataset(ours, split="train", image_shape=(64, 64), max_n_views=1, subjects=("S1",))
    pinned = make_train_loader(dataset, 2, num_workers=2, seed=0, pin_memory=True)
    plain = make_train_loader(dataset, 2, num_workers=0, seed=0)
    for loader in (pinned, plain):
        set_loader_epoch(loader, 0)
    batch, same = next(iter(pinned)), next(iter(plain))
    tensors = {k: v for k, v in batch.items() if isinstance(v, torch.Tensor)}
    assert tensors and all(v.is_pinned() for v in tensors.values())
    moved = move_batch(batch, torch.device("cuda"))
    torch.cuda.synchronize()
    for key in tensors:  # the same samples as an unpinned loader in the main process, on the GPU
        assert moved[key].device.type == "cuda"
        np.testing.assert_array_equal(moved[key].cpu().numpy(), same[key].numpy(), err_msg=key)


@pytest.mark.gpu
def test_grid_sample_backward_has_no_deterministic_cuda_kernel():
    """Why ``train.deterministic`` is refused on CUDA (ctxpose.engine.trainer.check_deterministic): the
    unprojection's grid_sample has no deterministic CUDA backward. When this test fails, PyTorch has one."""
    feats = torch.randn(1, 2, 8, 8, device="cuda", requires_grad=True)
    grid = torch.rand(1, 4, 1, 2, device="cuda") * 2 - 1
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        out = nn.functional.grid_sample(feats, grid, align_corners=True)
        with pytest.raises(RuntimeError, match="deterministic"):
            out.sum().backward()
    finally:
        torch.use_deterministic_algorithms(before)
