"""MPJPE as learnable-triangulation (Iskakov et al. 2019) reports it, beside ctxpose's own metrics.

What that repository computes (``Human36MMultiViewDataset.evaluate``) and its README reports:

* per pose, the mean over all joints of the Euclidean error, mm; no joint weighting (its validity is a dummy 1);
* "relative": prediction and ground truth each minus their own pelvis; "absolute": as they are;
* per action with the trials merged (``Directions-1`` and ``-2`` are ``Directions``), averaged over the
  action's poses; the code's scalar is the mean over all poses (``Average``), the paper's and README's tables
  the mean over actions ("averaged across all actions");
* the absolute table excludes the scenes whose ground truth is wrong (S9 Greeting-2, SittingDown-2,
  Waiting-1: the callers pass them, see :func:`ctxpose.data.h36m.metadata.damaged_ground_truth`).

Every number is returned under its protocol's name, so it never stands in for ours (``mpjpe``,
``mpjpe_relative`` of :class:`ctxpose.metrics.pose.MetricAccumulator`, which weigh joints by validity and exclude
nothing).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

#: the name under which the numbers appear in ``metrics.json``
PROTOCOL = "learnable_triangulation"


def _base(name: str) -> str:
    head, sep, tail = name.rpartition("-")
    return head if sep and tail.isdigit() else name


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else float("nan")


def learnable_triangulation_mpjpe(
    pred: np.ndarray,
    gt: np.ndarray,
    subject_idx: np.ndarray,
    action_idx: np.ndarray,
    trial: np.ndarray,
    subject_names: Sequence[str],
    action_names: Sequence[str],
    root: int,
    excluded_from_absolute: Iterable[tuple[str, str]] = (),
) -> dict:
    """learnable-triangulation's MPJPE, relative and absolute, per action and averaged.

    Args:
        pred: (N, J, 3) predicted keypoints, world mm (one row per evaluated pose).
        gt: (N, J, 3) ground truth, world mm.
        subject_idx, action_idx, trial: (N,) ints; ``action_names[action_idx]`` may carry a ``-<trial>`` suffix
            (then ``trial`` is not needed for the sequence name) or not (then ``<action>-<trial>`` names it).
        subject_names, action_names: the names the indices decode to.
        root: index of the pelvis joint.
        excluded_from_absolute: (subject, sequence) pairs such as ``("S9", "Greeting-2")`` left out of the
            absolute numbers.

    Returns:
        ``{"overall": {...}, "per_action": {action: {...}}, "excluded_from_absolute": ["S9/Greeting-2", ...]}``
        where overall has ``mpjpe_relative`` and ``mpjpe_absolute`` (means over actions, mm),
        ``mpjpe_relative_all_poses`` and ``mpjpe_absolute_all_poses`` (means over poses: the original code's
        scalar), ``n_samples`` and ``n_samples_absolute``; each action the same four counts and means.
    """
    pred = np.asarray(pred, np.float64)
    gt = np.asarray(gt, np.float64)
    if pred.shape != gt.shape or pred.ndim != 3 or pred.shape[-1] != 3:
        raise ValueError(f"pred {pred.shape} and gt {gt.shape}: expected the same (N, J, 3)")
    absolute = np.linalg.norm(pred - gt, axis=-1).mean(axis=-1)
    relative = np.linalg.norm((pred - pred[:, root:root + 1]) - (gt - gt[:, root:root + 1]), axis=-1).mean(axis=-1)
    subjects = np.asarray(subject_names, dtype=str)[np.asarray(subject_idx, np.int64)]
    names = np.asarray(action_names, dtype=str)[np.asarray(action_idx, np.int64)]
    trials = np.asarray(trial, np.int64).astype(str)
    sequences = np.array([n if _base(n) != n else f"{n}-{t}" for n, t in zip(names, trials, strict=True)],
                         dtype=str)
    excluded = sorted({f"{s}/{q}" for s, q in excluded_from_absolute})
    kept = ~np.isin(np.char.add(np.char.add(subjects, "/"), sequences), excluded)
    actions = np.array([_base(n) for n in names], dtype=str)
    per_action = {}
    for action in dict.fromkeys(_base(n) for n in action_names):
        mask = actions == action
        if not mask.any():
            continue
        per_action[action] = {"mpjpe_relative": _mean(relative[mask]), "mpjpe_absolute": _mean(absolute[mask & kept]),
                              "n_samples": int(mask.sum()), "n_samples_absolute": int((mask & kept).sum())}

    def over_actions(key: str) -> float:
        values = [m[key] for m in per_action.values() if not np.isnan(m[key])]
        return float(np.mean(values)) if values else float("nan")

    overall = {"mpjpe_relative": over_actions("mpjpe_relative"), "mpjpe_absolute": over_actions("mpjpe_absolute"),
               "mpjpe_relative_all_poses": _mean(relative), "mpjpe_absolute_all_poses": _mean(absolute[kept]),
               "n_samples": int(len(relative)), "n_samples_absolute": int(kept.sum())}
    return {"overall": overall, "per_action": per_action, "excluded_from_absolute": excluded}
