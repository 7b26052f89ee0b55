"""``visualize model``: the network runs on the chosen sample; projections keep the voxel axes; the cuboid is
drawn where the camera puts its corners."""

from __future__ import annotations

from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
import torch

from ctxpose.config import load_config
from ctxpose.errors import CheckpointError, ConfigError, DataError
from ctxpose.geometry.volumes import build_coord_volumes
from ctxpose.viz import model as vm
from ctxpose.viz.output import ImageSink
from ctxpose.viz.style import CUBOID, Style
from tests.unit.viz_fixtures import POSE, SK, K, facing_camera, pixel, reference_project, write_processed

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow  # builds and runs the tiny network (a few seconds)
SIZE = 384


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory):
    from ctxpose.models import model_from_config

    root = tmp_path_factory.mktemp("model")
    processed = write_processed(root / "processed", [POSE, POSE + [0.0, 0.0, 50.0]])
    with h5py.File(processed / "limbs.h5", "w") as f:
        f["mean"] = SK.bone_lengths(POSE)
        f["std"] = np.full(SK.num_bones, 20.0)
    cfg = load_config(ROOT / "configs" / "tiny_cpu.yaml",
                      [f"dataset.root={processed}", f"dataset.limb_length_path={processed / 'limbs.h5'}",
                       "model.volume_net.cuboid_size=1000.0", "val.retain_every_n_frames_in_test=1"])
    torch.manual_seed(0)
    weights = root / "weights.pt"
    torch.save(model_from_config(cfg).state_dict(), weights)
    out = root / "out"
    torch.set_num_threads(1)
    with ImageSink(out) as sink:
        sample = vm.visualize_model(cfg, weights, "S9/Walking-1/55011271/5", sink, style=Style(size=SIZE))
    return cfg, weights, out, sample


def test_model_views_are_written_for_the_chosen_sample(setup) -> None:
    cfg, _, out, sample = setup
    assert sample.name == "#3 S9 Walking-1  cam 55011271  frame 5"  # ordered by frame, then camera
    for name in ("overview", "cuboid", "heatmaps", "volumes", "attention"):
        image = cv2.imread(str(out / f"{name}.png"))
        assert image is not None and min(image.shape[:2]) >= 200, name
    s = cfg.model.volume_net.volume_size
    assert sample.volumes.shape == (SK.num_joints, s, s, s) and sample.attention.shape == (SK.num_joints, 4, 4, 4)
    assert sample.heatmaps.shape == (SK.num_joints, 16, 16)
    np.testing.assert_allclose(sample.volumes.sum(axis=(1, 2, 3)), 1.0, rtol=1e-4)
    np.testing.assert_allclose(sample.attention.sum(axis=(1, 2, 3)), 1.0, rtol=1e-4)
    np.testing.assert_allclose(sample.keypoints_gt, POSE + [0.0, 0.0, 50.0], atol=1e-3)


def test_cuboid_corners_are_drawn_where_the_camera_puts_them(setup) -> None:
    _, _, _, sample = setup
    image = vm.cuboid_image(sample, SK, Style(size=SIZE))
    pelvis = sample.keypoints_gt[SK.root]
    half = 500.0  # the first and last voxel centres lie on the cuboid's faces
    corners = np.array([pelvis + half * np.array([x, y, z]) for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)])
    R, t = facing_camera("back")
    uv = (reference_project(corners, K * [[0.5], [0.5], [1]], R, t) + 0.5) * SIZE / 64 - 0.5  # 64-pixel input
    assert all(0 <= u < SIZE and 0 <= v < SIZE for u, v in uv)
    assert [pixel(image, p) for p in uv] == [CUBOID] * 8


def test_projections_keep_the_voxel_axes() -> None:
    volume = np.zeros((8, 8, 8))
    volume[1, 2, 6] = 1.0  # x=1, y=2, z=6
    xy, xz, yz = vm.projections(volume, 8, [], Style(size=64))
    hot = [tuple(int(v) for v in np.unravel_index(img[..., 0].argmax(), img.shape[:2])) for img in (xy, xz, yz)]
    # (row, column) with the row axis pointing up: x-y -> (7 - y, x); x-z -> (7 - z, x); y-z -> (7 - z, y)
    assert hot == [(5, 1), (1, 1), (1, 2)]


def test_world_to_voxel_inverts_a_rotated_coordinate_volume(setup) -> None:
    _, _, _, sample = setup
    base = torch.tensor([[100.0, -50.0, 900.0]], dtype=torch.float64)
    cv = build_coord_volumes(base, 1000.0, 16, torch.tensor([0.7], dtype=torch.float64))[0].numpy()
    probe = vm.ModelSample(**{**sample.__dict__, "coord_volume": cv})
    ijk = np.array([[0, 0, 0], [3, 7, 11], [15, 15, 15]])
    np.testing.assert_allclose(probe.world_to_voxel(cv[tuple(ijk.T)]), ijk, atol=1e-9)
    # on the 4-voxel pooled grid voxels 0..3 of 16 are cell 0 (the centre 1.5 maps to 0), 12..15 are cell 3
    centres = (cv[[1, 13], [1, 13], [1, 13]] + cv[[2, 14], [2, 14], [2, 14]]) / 2
    np.testing.assert_allclose(probe.world_to_voxel(centres, 4), [[0, 0, 0], [3, 3, 3]], atol=1e-9)


def test_bad_sample_checkpoint_and_split_are_one_line_errors(setup, tmp_path: Path) -> None:
    from ctxpose.data.datasets import Human36MDataset

    cfg, weights, _, _ = setup
    dataset = Human36MDataset.from_config(cfg, "val")
    assert vm.parse_sample("2", dataset) == 2
    for spec, message in (("9", r"out of range; the val split has samples 0..3"),
                          ("S1/Walking-1/55011271/5", "subject 'S1' is not in the val split"),
                          ("S9/Walking-1/55011271/7", "no such sample"),
                          ("S9/Walking/55011271/5", "should be Action-trial"),
                          ("S9-Walking", "expected an index or SUBJECT/Action-trial/CAMERA/FRAME")):
        with pytest.raises(DataError, match=message):
            vm.parse_sample(spec, dataset)
    with pytest.raises(CheckpointError, match="checkpoint not found"), ImageSink(tmp_path) as sink:
        vm.visualize_model(cfg, tmp_path / "none.pt", "0", sink)
    with pytest.raises(DataError, match="--split test"), ImageSink(tmp_path) as sink:
        vm.visualize_model(cfg, weights, "0", sink, split="test")


def test_the_volumetric_model_has_no_attention_to_draw(setup, tmp_path: Path) -> None:
    """learnable-triangulation's volumetric model (``attention`` None): everything but attention.png is drawn;
    the triangulation models, which have no volume, are refused in one line."""
    from ctxpose.config import ExperimentConfig
    from ctxpose.models import build_model

    cfg, _, _, _ = setup
    default = ExperimentConfig().model.volume_net
    vol = load_config(ROOT / "configs" / "tiny_cpu.yaml",
                      [f"dataset.root={cfg.dataset.root}", f"dataset.limb_length_path={cfg.dataset.limb_length_path}",
                       "model.volume_net.cuboid_size=1000.0", "val.retain_every_n_frames_in_test=1",
                       "model.architecture=volumetric", "model.volume_net.volume_size=32",
                       f"model.volume_net.att_channels={default.att_channels}", "loss.use_global_attention_loss=false"])
    torch.manual_seed(0)
    torch.save(build_model(vol).state_dict(), tmp_path / "vol.pt")
    with ImageSink(tmp_path / "out") as sink:
        sample = vm.visualize_model(vol, tmp_path / "vol.pt", "S9/Walking-1/55011271/5", sink, style=Style(size=256))
    assert sample.attention is None and sample.volumes.shape == (SK.num_joints, 32, 32, 32)
    np.testing.assert_allclose(sample.volumes.sum(axis=(1, 2, 3)), 1.0, rtol=1e-4)
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["cuboid.png", "heatmaps.png", "overview.png", "volumes.png"]
    assert all(cv2.imread(str(tmp_path / "out" / name)) is not None for name in written)
    alg = load_config(ROOT / "configs" / "tiny_cpu_alg.yaml", [f"dataset.root={cfg.dataset.root}"])
    with pytest.raises(ConfigError, match="model.architecture: algebraic has no volume or cuboid to draw") as e, \
            ImageSink(tmp_path / "alg") as sink:
        vm.visualize_model(alg, tmp_path / "vol.pt", "0", sink)
    assert "\n" not in str(e.value)
