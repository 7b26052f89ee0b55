"""``ctxpose export-3dhp PREDICTIONS.npz --out inference_data.mat``: the file the official MATLAB script loads."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ctxpose.config import GroundTruth3DHP, JointGroups


def main(
    predictions: Annotated[Path, typer.Argument(
        metavar="PREDICTIONS", show_default=False,
        help="predictions.npz: keypoints_3d (N,17,3) camera mm, frame, sequence or subject_idx + subject_names "
             "(what `ctxpose eval --dataset 3dhp` writes).")],
    out: Annotated[Path, typer.Option("--out", metavar="FILE", help="Destination .mat (MATLAB v7.3).")
                   ] = Path("inference_data.mat"),
    data: Annotated[Path | None, typer.Option(
        metavar="DIR", show_default=False,
        help="Processed 3DHP folder: check every valid frame is predicted, print and write (JSON, the official "
             "CSVs) the numbers the official script will report.")] = None,
    joint_groups: Annotated[JointGroups | None, typer.Option(
        show_default=False, help="With --data: PCK/AUC joint groups (default 17).")] = None,
    ground_truth: Annotated[GroundTruth3DHP | None, typer.Option(
        show_default=False, help="With --data: ground truth (default univ_annot3, the official one).")] = None,
) -> None:
    """Write TS1..TS6 as 3x17x1xN float64 (mm, camera axes, 3DHP joint order, pelvis at the origin, valid
    frames in order) for mpii_test_predictions_py.m; optionally check and score it in Python first.

    Example:

        ctxpose export-3dhp eval_3dhp/predictions.npz --out inference_data.mat --data data/3dhp_processed
    """
    from rich.console import Console

    from ctxpose.cli.tables_3dhp import print_3dhp_result
    from ctxpose.data.mpi_inf_3dhp.export import export_inference_data, read_predictions
    from ctxpose.errors import DataError
    from ctxpose.metrics.mpi_inf_3dhp import evaluate_like_official

    if data is None and (joint_groups or ground_truth):
        raise DataError("--joint-groups / --ground-truth choose how --data scores the export; give --data PROCESSED")
    joint_groups = (joint_groups or JointGroups.ALL17).value
    ground_truth = (ground_truth or GroundTruth3DHP.UNIV).value
    labels = data / "labels.npz" if data else None
    report = export_inference_data(predictions, out, labels)
    console = Console()
    if labels is not None:
        result = evaluate_like_official(read_predictions(predictions), labels, joint_groups, ground_truth)
        print_3dhp_result(console, result)
        try:
            written = [result.write_json(out.with_name(f"{out.stem}_metrics.json")),
                       *result.write_official_csv(out.parent)]
        except OSError as e:
            raise DataError(f"{e.filename or out.parent}: cannot write the metrics ({e.strerror or e})") from None
        console.print("wrote " + ", ".join(str(p) for p in written))
    frames = ", ".join(f"{s} {n}" for s, n in report.frames.items())
    console.print(f"[green]wrote[/green] {report.path} ({frames} frames)")
    if report.missing:
        console.print(f"[yellow]warning:[/yellow] no predictions for {', '.join(report.missing)}; the official "
                      "script evaluates all six sequences", highlight=False)
