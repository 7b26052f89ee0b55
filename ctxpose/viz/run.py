"""``ctxpose visualize run``: training curves from a run folder, for people who do not open TensorBoard.

Reads ``scalars.jsonl`` (one JSON object per step: ``step`` and ``train/loss/*``, ``train/lr/*``,
``train/samples_per_s``, ``train/nan_steps``, and ``val/*`` at the end of each epoch) and ``metrics.json``
(one entry per epoch: ``epoch``, ``step``, ``train`` mean losses, ``val`` metrics), both written by
:mod:`ctxpose.engine.trainer`. A resumed run repeats some steps; the last value of each step is kept. The last
line of ``scalars.jsonl`` may be cut off while training runs; it is skipped.

Output: ``curves.png`` (one panel per loss, learning rates, validation errors in mm, validation PCK/AUC,
throughput) and ``summary.json`` (last and best values).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ctxpose.errors import DataError
from ctxpose.utils.io import atomic_write_text
from ctxpose.viz.figures import new_figure, render
from ctxpose.viz.output import ImageSink
from ctxpose.viz.style import Style

#: validation metrics in mm (lower is better), and scores (higher is better) with their factor to percent
VAL_MM = ("mpjpe", "mpjpe_relative", "pa_mpjpe", "n_mpjpe", "limb_length_error")
VAL_SCORES = {"pck_3dhp": 1.0, "auc_3dhp": 1.0, "pck2d@0.1": 100.0, "pck2d@0.2": 100.0, "pck2d@0.5": 100.0}


@dataclass
class RunScalars:
    """Series read from a run folder.

    Attributes:
        run_dir: the folder.
        steps: tag -> (steps (n,), values (n,)) from ``scalars.jsonl``, sorted by step.
        epochs: the ``metrics.json`` entries.
    """

    run_dir: Path
    steps: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    epochs: list[dict[str, Any]] = field(default_factory=list)

    def tags(self, prefix: str) -> list[str]:
        return sorted(t for t in self.steps if t.startswith(prefix))


def read_scalars_jsonl(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """tag -> (steps, values) from a ``scalars.jsonl`` (last value per step; a cut-off last line is skipped).

    Raises:
        DataError: a line other than the last is not a JSON object with an integer ``step``.
    """
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read ({e})") from None
    values: dict[str, dict[int, float]] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            step = int(record["step"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            if number == len(lines):
                break  # being written right now
            raise DataError(f"{path}:{number}: not a JSON object with a 'step' (expected one per line)") from None
        for tag, value in record.items():
            if tag != "step" and isinstance(value, int | float):
                values.setdefault(tag, {})[step] = float(value)
    out = {}
    for tag, by_step in values.items():
        steps = np.array(sorted(by_step), dtype=np.int64)
        out[tag] = (steps, np.array([by_step[s] for s in steps.tolist()]))
    return out


def load_run(run_dir: str | Path) -> RunScalars:
    """Read ``scalars.jsonl`` and ``metrics.json`` of a run folder (either may be missing, not both).

    Raises:
        DataError: no such folder, neither file, or a file that cannot be parsed.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError(f"{run_dir}: run folder not found")
    jsonl, metrics = run_dir / "scalars.jsonl", run_dir / "metrics.json"
    if not jsonl.is_file() and not metrics.is_file():
        raise DataError(f"{run_dir}: no scalars.jsonl or metrics.json (not a run folder of `ctxpose train`)")
    run = RunScalars(run_dir)
    if jsonl.is_file():
        run.steps = read_scalars_jsonl(jsonl)
    if metrics.is_file():
        try:
            epochs = json.loads(metrics.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise DataError(f"{metrics}: not readable JSON ({e})") from None
        if not isinstance(epochs, list) or not all(isinstance(e, dict) for e in epochs):
            raise DataError(f"{metrics}: expected a list of per-epoch objects")
        run.epochs = epochs
    if not run.steps and not run.epochs:
        raise DataError(f"{run_dir}: scalars.jsonl and metrics.json hold no values yet")
    return run


def smooth(values: np.ndarray, weight: float = 0.9) -> np.ndarray:
    """Exponential moving average with TensorBoard's debiasing (``weight`` 0: none)."""
    out = np.empty_like(values, dtype=np.float64)
    acc, norm = 0.0, 0.0
    for i, v in enumerate(values):
        acc = weight * acc + (1 - weight) * v
        norm = weight * norm + (1 - weight)
        out[i] = acc / norm
    return out


def _val_series(run: RunScalars, key: str) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of a validation metric: from metrics.json (x = step, or epoch + 1) else from the jsonl."""
    points = [((e.get("step") if e.get("step") is not None else e.get("epoch", k) + 1), e["val"][key])
              for k, e in enumerate(run.epochs) if isinstance(e.get("val"), dict) and key in e["val"]]
    if points:
        x, y = zip(*points, strict=True)
        return np.asarray(x, np.float64), np.asarray(y, np.float64)
    steps, values = run.steps.get(f"val/{key}", (np.zeros(0), np.zeros(0)))
    return steps.astype(np.float64), values


def _style_axes(ax, title: str, style: Style, ylabel: str = "", log: bool = False) -> None:
    fs = style.font_pt
    ax.set_title(title, fontsize=fs * 0.9)
    ax.set_xlabel("step", fontsize=fs * 0.7)
    if ylabel:
        ax.set_ylabel(ylabel, fontsize=fs * 0.7)
    if log:
        ax.set_yscale("log")
    ax.tick_params(which="both", labelsize=fs * 0.7)
    ax.yaxis.get_offset_text().set_fontsize(fs * 0.7)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=fs * 0.6)
    ax.grid(color="0.9")
    ax.set_axisbelow(True)


def _positive(values: np.ndarray) -> bool:
    finite = values[np.isfinite(values)]
    return bool(len(finite)) and bool((finite > 0).all()) and finite.max() / max(finite.min(), 1e-300) > 20


def plot_run(run: RunScalars, style: Style | None = None, smoothing: float = 0.9) -> np.ndarray:
    """All curves of a run in one picture (panels as in the module docstring); (H, W, 3) uint8 RGB."""
    style = style or Style()
    panels: list[Callable[[Any], None]] = []
    blue, orange = "#0b6efd", "#ff5a1f"
    palette = ["#0b6efd", "#ff5a1f", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f"]
    epoch_means = {k: [(e.get("step"), e["train"][k]) for e in run.epochs
                       if isinstance(e.get("train"), dict) and k in e["train"] and e.get("step") is not None]
                   for k in {k for e in run.epochs for k in (e.get("train") or {})}}

    for tag in run.tags("train/loss/"):
        name = tag.rsplit("/", 1)[1]

        def loss_panel(ax, tag=tag, name=name) -> None:
            x, y = run.steps[tag]
            ax.plot(x, y, color=blue, alpha=0.25, lw=0.8)
            ax.plot(x, smooth(y, smoothing), color=blue, lw=1.6, label=f"smoothed ({smoothing})")
            means = epoch_means.get(name, [])
            if means:
                mx, my = zip(*means, strict=True)
                ax.plot(mx, my, "o", color=orange, ms=4, label="epoch mean")
            _style_axes(ax, f"loss: {name}", style, log=_positive(y))
        panels.append(loss_panel)
    if not run.tags("train/loss/") and epoch_means:  # metrics.json only
        def epoch_loss_panel(ax) -> None:
            for k, (name, means) in enumerate(sorted(epoch_means.items())):
                mx, my = zip(*means, strict=True)
                ax.plot(mx, my, "o-", color=palette[k % len(palette)], label=name, ms=3)
            _style_axes(ax, "training losses (epoch means)", style, log=True)
        panels.append(epoch_loss_panel)
    if run.tags("train/lr/"):
        def lr_panel(ax) -> None:
            for k, tag in enumerate(run.tags("train/lr/")):
                x, y = run.steps[tag]
                ax.plot(x, y, color=palette[k % len(palette)], lw=1.6, label=tag.rsplit("/", 1)[1],
                        ls="-" if k == 0 else "--")
            _style_axes(ax, "learning rates", style, log=True)
        panels.append(lr_panel)
    def val_panel(keys: list[str], title: str, ylabel: str, best_of_first: bool):
        def panel(ax) -> None:
            for k, key in enumerate(keys):
                x, y = _val_series(run, key)
                ax.plot(x, y * VAL_SCORES.get(key, 1.0), "o-", color=palette[k % len(palette)], ms=3, lw=1.4, label=key)
            if best_of_first:
                bx, by = _val_series(run, keys[0])
                b = int(np.nanargmin(by))
                ax.annotate(f"best {by[b]:.1f}", (bx[b], by[b]), textcoords="offset points", xytext=(0, 8),
                            ha="center", fontsize=style.font_pt * 0.65)
            _style_axes(ax, title, style, ylabel=ylabel)
        return panel

    for keys, title, ylabel, lower_is_better in (
        ([k for k in VAL_MM if len(_val_series(run, k)[0])], "validation errors", "mm", True),
        ([k for k in VAL_SCORES if len(_val_series(run, k)[0])], "validation PCK / AUC", "%", False),
    ):
        if keys:
            panels.append(val_panel(keys, title, ylabel, best_of_first=lower_is_better))
    for tag, title in (("train/samples_per_s", "throughput (samples/s)"), ("train/nan_steps", "skipped steps")):
        if tag in run.steps:
            def extra_panel(ax, tag=tag, title=title) -> None:
                x, y = run.steps[tag]
                ax.plot(x, y, color="0.35", alpha=0.3, lw=0.8)
                ax.plot(x, smooth(y, smoothing), color="0.2", lw=1.4)
                _style_axes(ax, title, style)
            panels.append(extra_panel)
    if not panels:
        raise DataError(f"{run.run_dir}: no training or validation scalars to plot")
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig = new_figure(round(cols * style.size * 1.05), round(rows * style.size * 0.75 + 40), layout="constrained")
    steps = max((int(v[0][-1]) for v in run.steps.values() if len(v[0])), default=0)
    fig.suptitle(f"{run.run_dir.resolve().parent.name}/{run.run_dir.name}: {len(run.epochs)} epochs, {steps} steps",
                 fontsize=style.font_pt)
    axes = np.atleast_1d(fig.subplots(rows, cols)).reshape(-1)
    for ax, panel in zip(axes, panels, strict=False):
        panel(ax)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    return render(fig)


def summarize(run: RunScalars) -> dict[str, Any]:
    """Last value of every step series; per validation metric its last and best value (min for mm, max else)."""
    out: dict[str, Any] = {"run": str(run.run_dir), "epochs": len(run.epochs),
                           "last": {t: float(v[-1]) for t, (_, v) in run.steps.items() if len(v)}, "val": {}}
    for key in (*VAL_MM, *VAL_SCORES):
        x, y = _val_series(run, key)
        if len(y) and np.isfinite(y).any():
            b = int(np.nanargmin(y) if key in VAL_MM else np.nanargmax(y))
            out["val"][key] = {"last": float(y[-1]), "best": float(y[b]), "best_step": float(x[b])}
    return out


def visualize_run(run_dir: str | Path, sink: ImageSink, style: Style | None = None,
                  smoothing: float = 0.9) -> dict[str, Any]:
    """Write ``curves.png`` into ``sink`` and ``summary.json`` beside it; returns the summary.

    Args:
        run_dir: run folder of ``ctxpose train``.
        sink: where the image goes.
        style: sizes (``size`` is about one panel's width, px).
        smoothing: exponential-moving-average weight of the step curves, 0 <= w < 1.
    """
    if not 0 <= smoothing < 1:
        raise DataError(f"--smoothing {smoothing}: expected 0 <= w < 1")
    run = load_run(run_dir)
    sink.add("curves", plot_run(run, style, smoothing))
    summary = summarize(run)
    atomic_write_text(sink.out_dir / "summary.json", json.dumps(summary, indent=2))
    return summary
