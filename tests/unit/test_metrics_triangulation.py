"""learnable-triangulation's MPJPE (relative and absolute, per action, invalid scenes out of the absolute one)
against a slow loop written from what that repository's ``evaluate`` does."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ctxpose.metrics.triangulation import learnable_triangulation_mpjpe

DAMAGED = [("S9", "Greeting-2"), ("S9", "SittingDown-2"), ("S9", "Waiting-1")]


def reference(pred, gt, subjects, sequences, root, excluded):
    """Slow reference: per pose the mean over joints of sqrt(dx^2 + dy^2 + dz^2); per action (the sequence name
    without its trial) the mean over its poses; the overall figures the mean of those, and of all poses.

    ``subjects``/``sequences`` are per-pose strings ("S9", "Greeting-2"); ``excluded`` (subject, sequence) pairs
    left out of the absolute numbers."""
    per_action: dict[str, dict[str, list[float]]] = {}
    all_rel, all_abs = [], []
    for n in range(len(pred)):
        abs_err = rel_err = 0.0
        for j in range(len(pred[n])):
            d_abs = [pred[n][j][k] - gt[n][j][k] for k in range(3)]
            d_rel = [(pred[n][j][k] - pred[n][root][k]) - (gt[n][j][k] - gt[n][root][k]) for k in range(3)]
            abs_err += math.sqrt(sum(x * x for x in d_abs))
            rel_err += math.sqrt(sum(x * x for x in d_rel))
        abs_err /= len(pred[n])
        rel_err /= len(pred[n])
        action = sequences[n].split("-")[0]
        bucket = per_action.setdefault(action, {"rel": [], "abs": []})
        bucket["rel"].append(rel_err)
        all_rel.append(rel_err)
        if (subjects[n], sequences[n]) not in excluded:
            bucket["abs"].append(abs_err)
            all_abs.append(abs_err)

    def mean(values):
        return sum(values) / len(values) if values else float("nan")

    actions = {a: (mean(b["rel"]), mean(b["abs"]), len(b["rel"]), len(b["abs"])) for a, b in per_action.items()}
    return {
        "rel_actions": mean([v[0] for v in actions.values()]),
        "abs_actions": mean([v[1] for v in actions.values() if v[3]]),
        "rel_poses": mean(all_rel), "abs_poses": mean(all_abs), "actions": actions,
    }


def _check(got, ref):
    o = got["overall"]
    assert o["mpjpe_relative"] == pytest.approx(ref["rel_actions"], rel=1e-12)
    assert o["mpjpe_absolute"] == pytest.approx(ref["abs_actions"], rel=1e-12)
    assert o["mpjpe_relative_all_poses"] == pytest.approx(ref["rel_poses"], rel=1e-12)
    assert o["mpjpe_absolute_all_poses"] == pytest.approx(ref["abs_poses"], rel=1e-12)
    assert set(got["per_action"]) == set(ref["actions"])
    for action, (rel, abs_, n, n_abs) in ref["actions"].items():
        m = got["per_action"][action]
        assert (m["n_samples"], m["n_samples_absolute"]) == (n, n_abs)
        assert m["mpjpe_relative"] == pytest.approx(rel, rel=1e-12)
        if n_abs:
            assert m["mpjpe_absolute"] == pytest.approx(abs_, rel=1e-12)
        else:
            assert math.isnan(m["mpjpe_absolute"])


@pytest.mark.parametrize("names_with_trials", [False, True])
def test_matches_the_slow_reference_with_damaged_scenes_out_of_the_absolute_numbers(names_with_trials):
    rng = np.random.default_rng(0)
    subject_names = ["S9", "S11"]
    bases = ["Directions", "Greeting", "Waiting", "Eating"]
    n = 60
    subject_idx = rng.integers(0, 2, n)
    base_idx = rng.integers(0, len(bases), n)
    trial = rng.integers(1, 3, n)
    base_idx[:3], trial[:3], subject_idx[:3] = 1, 2, 0  # S9 Greeting-2 present (damaged)
    base_idx[3:5], trial[3:5], subject_idx[3:5] = 3, 1, 1  # Eating only in S11
    gt = rng.normal(0, 300, (n, 17, 3))
    pred = gt + rng.normal(0, 40, (n, 17, 3)) + rng.normal(0, 100, (n, 1, 3))  # a per-pose offset too
    sequences = [f"{bases[b]}-{t}" for b, t in zip(base_idx, trial, strict=True)]
    subjects = [subject_names[s] for s in subject_idx]
    if names_with_trials:  # the original's labels: "Greeting-2" names, the trial inside
        action_names = sorted(set(sequences))
        action_idx = np.array([action_names.index(q) for q in sequences])
    else:  # ours: base names and a trial column
        action_names, action_idx = bases, base_idx
    got = learnable_triangulation_mpjpe(pred, gt, subject_idx, action_idx, trial, subject_names, action_names, 6,
                                        DAMAGED)
    ref = reference(pred.tolist(), gt.tolist(), subjects, sequences, 6, set(DAMAGED))
    _check(got, ref)
    assert got["overall"]["n_samples"] == n and got["overall"]["n_samples_absolute"] == n - 3 - sum(
        1 for s, q in zip(subjects[3:], sequences[3:], strict=True) if (s, q) in DAMAGED)
    assert got["excluded_from_absolute"] == ["S9/Greeting-2", "S9/SittingDown-2", "S9/Waiting-1"]
    # the exclusion acts: the same poses with nothing excluded give other absolute numbers, the same relative
    everything = learnable_triangulation_mpjpe(pred, gt, subject_idx, action_idx, trial, subject_names,
                                               action_names, 6)
    assert everything["overall"]["mpjpe_relative"] == got["overall"]["mpjpe_relative"]
    assert everything["overall"]["mpjpe_absolute_all_poses"] != got["overall"]["mpjpe_absolute_all_poses"]


def test_a_perfect_prediction_is_zero_and_a_shift_is_absolute_only():
    gt = np.random.default_rng(1).normal(0, 300, (4, 17, 3))
    ids = (np.zeros(4, int), np.array([0, 0, 1, 1]), np.ones(4, int), ["S1"], ["Walking", "Eating"], 6)
    assert learnable_triangulation_mpjpe(gt, gt, *ids)["overall"]["mpjpe_absolute"] == 0.0
    shifted = learnable_triangulation_mpjpe(gt + [30.0, 40.0, 0.0], gt, *ids)["overall"]
    assert shifted["mpjpe_absolute"] == pytest.approx(50.0) and shifted["mpjpe_relative"] == pytest.approx(0.0)
    with pytest.raises(ValueError, match="expected the same"):
        learnable_triangulation_mpjpe(gt[:, :5], gt, *ids)


def test_eval_prints_the_protocols_numbers_under_its_name(capsys, monkeypatch):
    from ctxpose.cli.eval import print_table

    monkeypatch.setenv("COLUMNS", "200")
    gt = np.random.default_rng(2).normal(0, 300, (3, 17, 3))
    lt = learnable_triangulation_mpjpe(gt + [3.0, 4.0, 0.0], gt, np.zeros(3, int), np.zeros(3, int), np.ones(3, int),
                                       ["S11"], ["Waiting"], 6, DAMAGED)
    print_table({"overall": {"mpjpe": 5.0, "n_samples": 3}, "per_action": {}, "learnable_triangulation": lt})
    out = capsys.readouterr().out
    assert ("learnable-triangulation protocol (mean over actions): MPJPE relative 0.0 mm, absolute 5.0 mm "
            "(3 samples, without S9/Greeting-2, S9/SittingDown-2, S9/Waiting-1)") in out
