"""``ctxpose eval``: parse, build the model and the dataset, :func:`ctxpose.engine.launch.launch` the evaluation,
print the tables."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ctxpose.cli.options import AmpOpt, DeviceOpt, GpusOpt, ProcsOpt, SetOpt, nproc
from ctxpose.config import EvalDataset, GroundTruth3DHP, JointGroups, Split


def main(
    target: Annotated[str, typer.Argument(
        metavar="RUN|CONFIG", show_default=False,
        help="A run folder (its config.yaml and checkpoints/last.pt) or an experiment config with --checkpoint.")],
    checkpoint: Annotated[Path | None, typer.Option(
        metavar="FILE", show_default=False,
        help="Weights: a run checkpoint, our weights or the original's released weights.pth.")] = None,
    split: Annotated[Split, typer.Option(help="Which Human3.6M split to evaluate.")] = Split.VAL,
    dataset: Annotated[EvalDataset, typer.Option(
        help="h36m: the config's Human3.6M split; 3dhp: the MPI-INF-3DHP test set in --data (zero-shot).")
    ] = EvalDataset.H36M,
    data: Annotated[Path | None, typer.Option(
        metavar="DIR", show_default=False, help="With --dataset 3dhp: the folder of `ctxpose preprocess 3dhp`.")
    ] = None,
    joint_groups: Annotated[JointGroups, typer.Option(
        help="With --dataset 3dhp: PCK/AUC joint groups (17: the release's; 14: pelvis, spine, head dropped).")
    ] = JointGroups.ALL17,
    ground_truth: Annotated[GroundTruth3DHP, typer.Option(
        help="With --dataset 3dhp: univ_annot3 (official) or annot3 (non-standard, labelled so).")
    ] = GroundTruth3DHP.UNIV,
    root_estimates: Annotated[Path | None, typer.Option(
        metavar="FILE", show_default=False,
        help="With --dataset 3dhp: a predictions.npz whose pelvis is the cuboid root (default: the ground-truth "
             "pelvis, the zero-shot protocol).")] = None,
    gpus: GpusOpt = None,
    procs: ProcsOpt = None,
    device: DeviceOpt = None,
    amp: AmpOpt = None,
    out: Annotated[Path | None, typer.Option(
        metavar="DIR", show_default=False,
        help="Output folder (default: RUN/eval_<split|3dhp> for a run folder, else ./eval or ./eval_3dhp).")] = None,
    set_: SetOpt = None,
) -> None:
    """Evaluate a checkpoint: MPJPE, PA-MPJPE, N-MPJPE... overall, per action and per subject, or the official
    MPI-INF-3DHP PCK/AUC/MPJPE tables; writes metrics.json and predictions.npz.

    Example: ctxpose eval runs/tiny_cpu_20260101-120000 --device cpu

    More: ctxpose eval configs/human36m_contextpose.yaml --checkpoint weights.pth --gpus 2 --out results/h36m;
    ctxpose eval RUN --dataset 3dhp --data data/3dhp --joint-groups 14
    """
    from rich.console import Console

    from ctxpose.config import load_config
    from ctxpose.engine.dist import default_device
    from ctxpose.engine.evaluator import evaluate
    from ctxpose.engine.launch import Layout, launch
    from ctxpose.engine.runs import resolve_eval_target
    from ctxpose.errors import ConfigError
    from ctxpose.models import load_model
    from ctxpose.utils.io import check_writable_dir

    is_3dhp = dataset is EvalDataset.MPI_INF_3DHP
    if is_3dhp and data is None:
        raise ConfigError("--dataset 3dhp: needs --data DIR (the folder of `ctxpose preprocess 3dhp`)")
    given_3dhp_options = [name for name, value, default in (
        ("--data", data, None), ("--root-estimates", root_estimates, None),
        ("--joint-groups", joint_groups, JointGroups.ALL17), ("--ground-truth", ground_truth, GroundTruth3DHP.UNIV))
        if value != default]
    if not is_3dhp and given_3dhp_options:
        raise ConfigError(f"{', '.join(given_3dhp_options)}: only with --dataset 3dhp")
    if is_3dhp and split is not Split.VAL:
        raise ConfigError("--split: the MPI-INF-3DHP test set has no splits; leave --split out with --dataset 3dhp")
    cfg_path, weights = resolve_eval_target(target, checkpoint)
    cfg = load_config(cfg_path, set_ or [])
    n, device = nproc(gpus, procs, device)
    device_name = default_device(getattr(device, "value", device))
    layout = Layout(n)
    layout.check(device_name)
    name = "eval_3dhp" if is_3dhp else f"eval_{split.value}"
    out = out or (Path(target) / name if Path(target).is_dir() else Path("eval_3dhp" if is_3dhp else "eval"))
    check_writable_dir(out)
    model = load_model(cfg, weights)  # our run checkpoints ({"model": ...}), plain and original weights
    if is_3dhp:
        from ctxpose.data.mpi_inf_3dhp.dataset import MPIInf3DHPDataset
        from ctxpose.engine.evaluator import MPI3DHPEvaluator

        eval_set = MPIInf3DHPDataset(data, image_shape=cfg.model.image_shape, root_estimates=root_estimates)
        evaluator = MPI3DHPEvaluator(eval_set, joint_groups, ground_truth)
    else:
        from ctxpose.data.datasets import Human36MDataset
        from ctxpose.engine.evaluator import PoseEvaluator
        from ctxpose.skeleton import get_skeleton

        eval_set = Human36MDataset.from_config(cfg, split.value)
        evaluator = PoseEvaluator(eval_set, get_skeleton(cfg.model.skeleton))
    result = launch(evaluate, model, eval_set, device_name, batch_size=cfg.val.batch_size,
                    num_workers=cfg.val.num_workers, amp=amp, evaluator=evaluator, out_dir=out, show_progress=True,
                    layout=layout).get(0)
    if result is None:
        return
    console = Console()
    if is_3dhp:
        from ctxpose.cli.tables_3dhp import print_3dhp_result

        print_3dhp_result(console, result.extra["mpi_inf_3dhp"])
        console.print(f"cuboid root: {result.extra['root_source']}")
    else:
        print_table(result.to_dict())
    console.print(f"wrote {out / 'metrics.json'} and {out / 'predictions.npz'}")


def print_table(payload: dict[str, Any]) -> None:
    """Per-action rows (MPJPE, PA-MPJPE, N-MPJPE, root-relative MPJPE, mm) and an overall row."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Evaluation (mm)")
    for col in ("action", "MPJPE", "PA-MPJPE", "N-MPJPE", "MPJPE rel."):
        table.add_column(col, justify="left" if col == "action" else "right")

    def row(name: str, m: dict[str, float], style: str | None = None) -> None:
        table.add_row(name, *(f"{m.get(k, float('nan')):.1f}" for k in ("mpjpe", "pa_mpjpe", "n_mpjpe",
                                                                         "mpjpe_relative")), style=style)

    for action, metrics in payload["per_action"].items():
        row(action, metrics)
    row(f"all ({int(payload['overall'].get('n_samples', 0))} samples)", payload["overall"], style="bold")
    Console().print(table)
    lt = payload.get("learnable_triangulation")
    if lt:
        o = lt["overall"]
        Console().print(f"learnable-triangulation protocol (mean over actions): MPJPE relative "
                        f"{o['mpjpe_relative']:.1f} mm, absolute {o['mpjpe_absolute']:.1f} mm "
                        f"({o['n_samples_absolute']} samples, without {', '.join(lt['excluded_from_absolute'])})")
