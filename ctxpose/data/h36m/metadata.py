"""Human3.6M dataset facts: subjects, sequences, raw file names, frame counts, damaged sequences, splits.

The facts live once, as data, in ``ctxpose/resources/h36m_metadata.json`` (derived from
``shared/h36m/h36m_metadata.json``; sources: the official release ``metadata.xml`` and MATLAB code,
ContextPose/anibali ``process_h36m.py`` and ContextPose ``mvn/datasets/human36m.py``). This module only
reads that file and answers questions about it.

Vocabulary:
    subject: "S1".."S11" (only S1, S5, S6, S7, S8, S9, S11 have public ground truth).
    action: base action name, e.g. "TakingPhoto"; trial: 1 or 2.
    sequence: processed name ``f"{action}-{trial}"``, e.g. "TakingPhoto-2".
    base name: the raw file stem with the dataset's quirks, e.g. "Photo 1" (S6 TakingPhoto-2).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

from ctxpose.errors import DataError

RAW_KINDS = ("D3_Positions", "D2_Positions", "D3_Positions_mono", "D3_Positions_mono_universal", "Videos",
             "ground_truth_bb")


@dataclass(frozen=True)
class Sequence:
    """One recorded sequence (all cameras) of one subject.

    Attributes:
        subject: e.g. "S1".
        action: base action name, e.g. "Directions".
        trial: 1 or 2.
        base_name: raw file stem, e.g. "Directions 1".
        num_frames: number of pose frames (official count; the videos are truncated to it).
        video_frames: camera id -> number of frames in the real video (a few more than ``num_frames``).
    """

    subject: str
    action: str
    trial: int
    base_name: str
    num_frames: int
    video_frames: dict[str, int]

    @property
    def name(self) -> str:
        """Processed sequence name, e.g. "Directions-1"."""
        return f"{self.action}-{self.trial}"

    @property
    def key(self) -> str:
        """Unique id, e.g. "S1/Directions-1"."""
        return f"{self.subject}/{self.name}"


@functools.lru_cache(maxsize=1)
def _facts() -> dict[str, Any]:
    text = resources.files("ctxpose").joinpath("resources/h36m_metadata.json").read_text(encoding="utf-8")
    return json.loads(text)


def subjects() -> list[str]:
    """Subjects with public poses and videos, in the usual order."""
    return list(_facts()["subjects"])


def camera_ids() -> list[str]:
    """The four camera ids; index in this list = camera index (0..3)."""
    return list(_facts()["cameras"])


def actions() -> list[str]:
    """The 15 action names (without "Miscellaneous"/"_ALL")."""
    return list(_facts()["actions"])


def train_subjects() -> list[str]:
    """Protocol #1 training subjects (ContextPose ``human36m.py``: S1, S5, S6, S7, S8)."""
    return list(_facts()["splits"]["train"])


def test_subjects() -> list[str]:
    """Protocol #1 test subjects (S9, S11)."""
    return list(_facts()["splits"]["test"])


def split_of(subject: str) -> str:
    """"train" or "test"."""
    return "train" if subject in train_subjects() else "test"


def sequence(subject: str, name: str) -> Sequence:
    """Look a sequence up by subject and processed name ("Directions-1")."""
    facts = _facts()
    try:
        base = facts["raw_base_names"][subject][name]
        frames = facts["num_frames"][subject][name]
    except KeyError:
        raise DataError(f"unknown Human3.6M sequence {subject}/{name}; expected one of the subjects "
                        f"{subjects()} and a name like 'Directions-1'") from None
    action, trial = name.rsplit("-", 1)
    return Sequence(subject, action, int(trial), base, int(frames["poses"]), dict(frames["video"]))


def sequences(subject_filter: list[str] | None = None, action_filter: list[str] | None = None) -> list[Sequence]:
    """All sequences, optionally filtered.

    Args:
        subject_filter: subjects to keep ("S1"); None keeps all.
        action_filter: actions to keep, either base names ("Walking", both trials) or sequence names
            ("Walking-1"); None keeps all.

    Raises:
        DataError: a filter names an unknown subject or action.
    """
    subs = subjects()
    for s in subject_filter or []:
        if s not in subs:
            raise DataError(f"--subjects: unknown subject {s!r}; expected some of {subs}")
    valid_actions = set(actions()) | {f"{a}-{t}" for a in actions() for t in (1, 2)}
    for a in action_filter or []:
        if a not in valid_actions:
            raise DataError(f"--actions: unknown action {a!r}; expected e.g. 'Walking' or 'Walking-1' from {actions()}")
    out = []
    for s in subs:
        if subject_filter and s not in subject_filter:
            continue
        for a in actions():
            for t in (1, 2):
                name = f"{a}-{t}"
                if action_filter and a not in action_filter and name not in action_filter:
                    continue
                out.append(sequence(s, name))
    return out


def is_missing_video(subject: str, name: str, camera: str) -> bool:
    """True for the known-missing camera views (S11 Directions-2, camera 54138969)."""
    return any(m["subject"] == subject and m["sequence"] == name and m["camera"] == camera
               for m in _facts()["missing_videos"])


def damaged_ground_truth() -> list[tuple[str, str]]:
    """(subject, sequence) pairs whose ground truth is damaged (S9 Greeting-2, SittingDown-2, Waiting-1)."""
    return [(d["subject"], d["sequence"]) for d in _facts()["damaged_ground_truth"]]


def raw_relpath(kind: str, subject: str, base_name: str, camera: str | None = None) -> str:
    """Path of a raw file inside the extracted dataset, e.g. "S1/Videos/Directions 1.54138969.mp4".

    Args:
        kind: one of ``RAW_KINDS``.
        subject: e.g. "S1".
        base_name: raw file stem (``Sequence.base_name``).
        camera: camera id; required for every kind except "D3_Positions".
    """
    if kind not in RAW_KINDS:
        raise ValueError(f"unknown raw kind {kind!r}; expected one of {RAW_KINDS}")
    return _facts()["layout"][kind].format(subject=subject, base=base_name, camera=camera)


def archive_name(kind: str, subject: str) -> str:
    """Official archive file name, e.g. "Videos_S1.tgz"."""
    return _facts()["archives"][kind].format(subject=subject)


# --------------------------------------------------------------------------- `ctxpose synthesize h36m` defaults
# (here, in a module without numpy/OpenCV/torch, so the command line can show them without importing those)

DEFAULT_SUBJECTS = ("S1", "S9")
DEFAULT_ACTIONS = ("Walking-1", "TakingPhoto-2")
#: Frame widths the synthesizer accepts, px: below 64 the body is a few pixels tall (and MP4 needs 16-px
#: macroblocks); above 4000 (4x the real width) a frame alone takes tens of MB.
MIN_SIZE, MAX_SIZE = 64, 4000
