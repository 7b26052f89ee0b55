"""The demo pipeline: synthetic Human3.6M -> preprocess -> train the tiny setting -> evaluate -> overlay, then
the trained model zero-shot on a synthetic MPI-INF-3DHP test set (the paper's second benchmark).

It reads the shipped ``tiny_cpu`` config (the same file as ``configs/tiny_cpu.yaml``) and only points it at
the data it makes, so it works from a plain ``pip install``. ``ctxpose demo`` and
``benchmarks/learn_synthetic.py`` call :func:`run_demo`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ctxpose.config import ExperimentConfig, load_config, save_config

DEMO_SUBJECTS = ("S1", "S9")  # train, val
DEMO_ACTIONS = ("Walking-1", "Walking-2", "TakingPhoto-1", "TakingPhoto-2")


@dataclass
class DemoResult:
    """What :func:`run_demo` made (paths under its ``out`` folder) and the numbers it measured."""

    config: Path
    run_dir: Path
    checkpoint: Path
    eval_dir: Path
    overlay: Path
    untrained_mpjpe: float
    result: Any  # ctxpose.engine.evaluator.EvalResult of the trained model
    seconds: float
    mpi_inf_3dhp: Any = None  # its EvalResult on the synthetic MPI-INF-3DHP test set (None if skipped)
    eval_3dhp_dir: Path | None = None
    infer: list[dict] | None = None  # ctxpose.engine.infer_measure rows on the held-out videos
    infer_json: Path | None = None


def demo_config(processed: Path, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """The shipped ``tiny_cpu`` setting reading ``processed`` (S1 train, S9 val), plus ``key=value`` overrides."""
    return load_config("tiny_cpu", [f"dataset.root={processed}",
                                    f"dataset.limb_length_path={processed / 'mean_and_std_limb_length.h5'}",
                                    f"dataset.train_subjects=[{DEMO_SUBJECTS[0]}]",
                                    f"dataset.val_subjects=[{DEMO_SUBJECTS[1]}]", *overrides])


def prepare_demo_data(out: Path, frames: int = 60, image_size: int = 64) -> Path:
    """Synthesize the raw dataset (S1 train, S9 val) and preprocess it; returns the processed folder."""
    from ctxpose.data.h36m.preprocess import PreprocessOptions, preprocess_h36m
    from ctxpose.data.h36m.synthesize import synthesize_h36m
    from ctxpose.errors import DataError
    from ctxpose.utils.io import atomic_write_text

    processed, marker = out / "processed", out / "demo_data.json"
    settings = json.dumps({"subjects": list(DEMO_SUBJECTS), "actions": list(DEMO_ACTIONS), "frames": frames,
                           "size": 320, "image_size": image_size})
    if marker.is_file() and marker.read_text() == settings and (processed / "labels.npz").is_file():
        return processed  # made by an earlier demo with the same settings
    if (out / "raw").exists() or processed.exists():
        raise DataError(f"{out}: holds data that the demo did not make with these settings "
                        f"(no matching {marker.name}); use an empty --out folder")
    synthesize_h36m(out / "raw", subjects=DEMO_SUBJECTS, actions=DEMO_ACTIONS, n_frames=frames, size=320)
    report = preprocess_h36m(out / "raw", processed,
                             PreprocessOptions(image_size=image_size, train_every=1, test_every=1))
    if not report.ok:
        raise DataError(f"{processed}: preprocessing failed for {sorted(report.failed)}")
    atomic_write_text(marker, settings)
    return processed


def prepare_demo_3dhp(out: Path, image_size: int = 64) -> Path:
    """Synthesize a small MPI-INF-3DHP test set (TS1-TS6, 21 frames each) and preprocess it; returns the folder."""
    from ctxpose.data.mpi_inf_3dhp.preprocess import Preprocess3DHPOptions, preprocess_3dhp
    from ctxpose.data.mpi_inf_3dhp.synthesize import synthesize_3dhp
    from ctxpose.errors import DataError

    raw, processed = out / "3dhp_raw", out / "3dhp_processed"
    if not (processed / "labels.npz").is_file():
        synthesize_3dhp(raw, n_frames=21, size=256)
        report = preprocess_3dhp(raw, processed, Preprocess3DHPOptions(image_size=image_size))
        if not report.ok:
            raise DataError(f"{processed}: preprocessing failed for {sorted(report.failed)}")
    return processed


def evaluate_untrained(cfg: ExperimentConfig, path: Path) -> float:
    """Val MPJPE (mm) of the run's initial weights, saved to ``path``: the demo's "before" number."""
    from ctxpose.data.datasets import Human36MDataset
    from ctxpose.engine.evaluator import evaluate
    from ctxpose.engine.trainer import initial_model
    from ctxpose.utils.io import torch_save_atomic

    model = initial_model(cfg)  # the same initial weights the training run starts from
    torch_save_atomic(model.state_dict(), path)
    return evaluate(model, Human36MDataset.from_config(cfg, "val"), "cpu", batch_size=cfg.val.batch_size,
                    num_workers=cfg.val.num_workers).metrics["mpjpe"]


DEMO_STAGES = 6
#: frames per held-out video and root methods of the demo's last step (``ctxpose infer`` on its own videos)
DEMO_INFER_FRAMES = 3
DEMO_INFER_VIDEOS = 4  # one sequence seen by its four cameras (the whole subject's 16 videos took minutes)
DEMO_INFER_METHODS = ("given", "rootnet", "bones")


def demo_infer(out: Path, cfg: ExperimentConfig, checkpoint: Path) -> tuple[list[dict], Path]:
    """``ctxpose infer``'s accuracy on the validation subject's synthetic videos (boxes from their masks via a
    COCO results file): rows of :func:`ctxpose.engine.infer_measure.measure_all`, also written as JSON."""
    from ctxpose.engine.infer import PoseEstimator
    from ctxpose.engine.infer_measure import load_cases, measure_all
    from ctxpose.utils.io import atomic_write_text

    folder = out / "infer"
    folder.mkdir(parents=True, exist_ok=True)
    cases = load_cases(out / "raw", DEMO_SUBJECTS[1], DEMO_INFER_FRAMES, folder / "boxes.coco.json",
                       DEMO_INFER_VIDEOS)
    rows = measure_all(PoseEstimator.from_config(cfg, checkpoint, "cpu"), cases, DEMO_INFER_METHODS)
    path = folder / "measured.json"
    atomic_write_text(path, json.dumps({"subject": DEMO_SUBJECTS[1], "rows": rows}, indent=1))
    return rows, path


def run_demo(out: Path, epochs: int | None = None, overrides: Sequence[str] = (),
             stage: Callable[[str], None] = lambda message: None, mpi_inf_3dhp: bool = True,
             frames: int = 60) -> DemoResult:
    """The whole demo in ``out`` on the CPU; ``stage(message)`` announces each of its stages.

    Args:
        out: folder for the data, the run and the results (reused only if the demo made its data).
        epochs: training epochs (default: the tiny setting's ``train.n_epochs``).
        overrides: config overrides, applied last.
        mpi_inf_3dhp: also evaluate the trained model zero-shot on a synthetic MPI-INF-3DHP test set.
        frames: frames of each synthetic Human3.6M sequence (at least :data:`DEMO_INFER_FRAMES`).
    """
    from ctxpose.data.datasets import Human36MDataset
    from ctxpose.engine.evaluator import evaluate
    from ctxpose.engine.trainer import initial_model, train
    from ctxpose.viz.predictions import save_overlay

    start = time.perf_counter()
    stage(f"synthesizing and preprocessing a small Human3.6M ({DEMO_SUBJECTS[0]} train, {DEMO_SUBJECTS[1]} val)")
    processed = prepare_demo_data(out, frames)
    cfg = demo_config(processed, [*([f"train.n_epochs={epochs}"] if epochs is not None else []), *overrides])
    save_config(cfg, out / "config.yaml")
    stage("untrained model on the validation split")
    untrained = evaluate_untrained(cfg, out / "untrained.pt")
    t = cfg.train
    stage(f"training {t.n_epochs} epochs of {t.n_objects_per_epoch // t.batch_size} steps on the CPU "
          f"-> {out / 'run'}")
    val_set = Human36MDataset.from_config(cfg, "val")
    model = initial_model(cfg)
    trained = train(cfg, model, Human36MDataset.from_config(cfg, "train"), val_set, out / "run", "cpu",
                    show_progress=True)  # a stop raises ctxpose.errors.Stopped naming the run folder
    stage("evaluating the trained model")
    result = evaluate(model, val_set, "cpu", batch_size=cfg.val.batch_size, num_workers=cfg.val.num_workers,
                      out_dir=out / "eval")
    overlay = save_overlay(out / "eval", processed, out / "eval" / "overlay.png")
    demo = DemoResult(out / "config.yaml", trained.run_dir, trained.checkpoint, out / "eval", overlay, untrained,
                      result, 0.0)
    if mpi_inf_3dhp:
        from ctxpose.data.mpi_inf_3dhp.dataset import MPIInf3DHPDataset

        stage("the trained model zero-shot on a synthetic MPI-INF-3DHP test set (TS1-TS6)")
        data = prepare_demo_3dhp(out, cfg.model.image_shape[0])
        demo.eval_3dhp_dir = out / "eval_3dhp"
        demo.mpi_inf_3dhp = evaluate(model, MPIInf3DHPDataset(data, image_shape=cfg.model.image_shape), "cpu",
                                     batch_size=cfg.val.batch_size, num_workers=cfg.val.num_workers,
                                     out_dir=demo.eval_3dhp_dir)
    stage(f"ctxpose infer on {DEMO_SUBJECTS[1]}'s synthetic videos (boxes from their masks, estimated roots)")
    demo.infer, demo.infer_json = demo_infer(out, cfg, trained.checkpoint)
    demo.seconds = time.perf_counter() - start
    return demo
