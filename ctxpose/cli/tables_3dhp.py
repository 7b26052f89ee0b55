"""Rich tables of an MPI-INF-3DHP evaluation (``ctxpose.metrics.mpi_inf_3dhp.MPI3DHPResult``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from ctxpose.metrics.mpi_inf_3dhp import MPI3DHPResult


def protocol_caption(result: MPI3DHPResult) -> str:
    """Which joint groups and ground truth the numbers use (printed under every table)."""
    from ctxpose.metrics.mpi_inf_3dhp import MPI_INF_3DHP_JOINT_GROUPS

    joints = sum(len(j) for _, j in MPI_INF_3DHP_JOINT_GROUPS[result.joint_groups])
    gt = (result.ground_truth if result.standard else
          f"[bold red]{result.ground_truth}: NON-STANDARD, not comparable with published numbers[/bold red]")
    return (f"joint groups {result.joint_groups} ({joints} joints in PCK/AUC; MPJPE over all 17); "
            f"ground truth {gt}; PCK < 150 mm, AUC over 0:5:150 mm")


def _rows_table(title: str, first: str, rows: dict[str, dict], caption: str, bold: str | None = None) -> Table:
    table = Table(title=title, caption=caption)
    for col in (first, "frames", "MPJPE (mm)", "PCK", "AUC"):
        table.add_column(col, justify="left" if col == first else "right")
    for name, row in rows.items():
        table.add_row(name, str(row["n_frames"]), f"{row['mpjpe']:.1f}", f"{row['pck']['Total']:.1f}",
                      f"{row['auc']['Total']:.1f}", style="bold" if name == bold else None)
    return table


def tables(result: MPI3DHPResult) -> list[Table]:
    """Per sequence, per activity (7 + All), per scene (frames pooled) and per joint group (All)."""
    caption = protocol_caption(result)
    groups = Table(title="MPI-INF-3DHP per joint group (all frames)", caption=caption)
    groups.add_column("metric")
    for g in result.group_names:
        groups.add_column(g, justify="right")
    for metric in ("pck", "auc"):
        groups.add_row(metric.upper(), *(f"{result.overall[metric][g]:.1f}" for g in result.group_names))
    return [_rows_table("MPI-INF-3DHP per sequence", "sequence", result.per_sequence, caption),
            _rows_table("MPI-INF-3DHP per activity", "activity", result.per_activity, caption, bold="All"),
            _rows_table("MPI-INF-3DHP per scene", "scene", result.per_scene, caption), groups]


def print_3dhp_result(console: Console, result: MPI3DHPResult) -> None:
    """Print :func:`tables` to ``console``."""
    for table in tables(result):
        console.print(table)
