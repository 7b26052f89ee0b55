"""``ctxpose fetch-weights``: fetch, import, verify and list the released files (library side).

Who does what: the registry (:mod:`ctxpose.weights.registry`) says what exists; :mod:`ctxpose.weights.resolvers`
turns share links into direct URLs (gdown for Google Drive pages); :mod:`ctxpose.weights.http` streams with
resume and retries; **pooch** (``pooch.retrieve`` with our downloader) checks the sha256 and moves the finished
file from a temporary name beside the destination into place; :mod:`ctxpose.weights.verify` proves the content
before that move. So a file is only ever under its final name once its size, digest(s) and content were checked.

Checksums: where the registry has no sha256 (none is published for these files), the first verified file is
pinned in ``<root>/ctxpose-weights.lock`` (trust on first use) and every later run checks against the pin.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ctxpose._version import __version__
from ctxpose.errors import CtxposeError
from ctxpose.utils.io import atomic_write_text
from ctxpose.weights.http import DownloadError, HttpSettings, SafeSession, download
from ctxpose.weights.registry import Artifact, Registry, load_registry
from ctxpose.weights.resolvers import Endpoints, Resolved, resolve
from ctxpose.weights.verify import VerificationError, verify_file

logger = logging.getLogger(__name__)

LOCK_NAME = "ctxpose-weights.lock"
PART_SUFFIX = ".part"
#: progress(artifact name, event, n): http events ("start", "total", "advance", "restart") or "done"
FetchProgress = Callable[[str, str, int], None]


class ChecksumMismatch(CtxposeError):
    """A file's digest differs from the registry's or the pinned one."""


class FetchFailed(CtxposeError):
    """Every URL of an artifact failed."""


def default_root() -> Path:
    """The data root: ``$CTXPOSE_DATA`` or ``./data``."""
    return Path(os.environ.get("CTXPOSE_DATA") or "data")


def env_mirrors() -> tuple[str, ...]:
    """URL prefixes from ``$CTXPOSE_MIRROR`` (separated by spaces or commas)."""
    return tuple(m for m in os.environ.get("CTXPOSE_MIRROR", "").replace(",", " ").split() if m)


@dataclass(frozen=True)
class FetchOptions:
    """Where and how to fetch.

    Attributes:
        root: data root; destinations are relative to it.
        mirrors: URL prefixes tried before the registry's URLs (``PREFIX/<dest>``).
        settings: timeouts, retries.
        endpoints: share-link API roots (tests point them at 127.0.0.1).
        registry: None = the shipped one.
    """

    root: Path = field(default_factory=default_root)
    mirrors: tuple[str, ...] = ()
    settings: HttpSettings = field(default_factory=HttpSettings)
    endpoints: Endpoints = field(default_factory=Endpoints)
    registry: Registry | None = None

    def get_registry(self) -> Registry:
        return self.registry or load_registry()


@dataclass
class Outcome:
    """What happened to one artifact."""

    name: str
    path: Path
    ok: bool
    action: str  # "verified", "downloaded", "imported", "pinned", "failed", "missing", ...
    detail: str = ""


@dataclass(frozen=True)
class Status:
    """State of one artifact under the root (``--list``).

    Attributes:
        state: "missing", "partial", "verified" (digest equals the registry's or the pin), "unpinned"
            (present, no digest to compare yet), "mismatch".
        checksum: where the expected digest comes from: "registry", "pinned <date>" or "none published".
    """

    artifact: Artifact
    path: Path
    state: str
    size: int | None
    sha256: str | None
    expected: str | None
    checksum: str


# ---------------------------------------------------------------------- lock file


def read_lock(root: Path) -> dict[str, dict]:
    """Pinned files: name -> {sha256, size, source, pinned, dest}."""
    path = Path(root) / LOCK_NAME
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        files = data["files"]
        if not isinstance(files, dict):
            raise TypeError("files is not an object")
        return files
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CtxposeError(f"{path}: unreadable lock file ({type(e).__name__}: {e}); fix or delete it "
                           "(its pins are re-made from the next verified files)") from None


def _pin(root: Path, artifact: Artifact, sha256: str, size: int, source: str) -> None:
    files = read_lock(root)
    files[artifact.name] = {"dest": artifact.dest, "sha256": sha256, "size": size, "source": source,
                            "pinned": time.strftime("%Y-%m-%dT%H:%M:%S"), "ctxpose_version": __version__}
    text = json.dumps({"format": "ctxpose-weights-lock", "version": 1, "files": files}, indent=1, sort_keys=True)
    atomic_write_text(Path(root) / LOCK_NAME, text + "\n")


def _expected(artifact: Artifact, lock: dict[str, dict]) -> tuple[str | None, str]:
    if artifact.sha256:
        return artifact.sha256, "registry"
    pin = lock.get(artifact.name)
    if pin and pin.get("dest") == artifact.dest and isinstance(pin.get("sha256"), str):
        return pin["sha256"], f"pinned {str(pin.get('pinned', ''))[:10]}"
    return None, "none published"


def digests(path: Path, algorithms: tuple[str, ...] = ("sha256",)) -> dict[str, str]:
    """Hex digests of a file, all in one pass."""
    hashers = {a: hashlib.new(a) for a in algorithms}
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            for h in hashers.values():
                h.update(block)
    return {a: h.hexdigest() for a, h in hashers.items()}


# ---------------------------------------------------------------------- status


def status(options: FetchOptions, names: list[str] | None = None) -> list[Status]:
    """State of each artifact (all when ``names`` is None); hashes every present file."""
    registry = options.get_registry()
    lock = read_lock(options.root)
    out = []
    for art in registry.select(names) if names else registry.artifacts:
        path = art.path(options.root)
        expected, checksum = _expected(art, lock)
        part = path.with_name(path.name + PART_SUFFIX)
        if not path.is_file():
            state = "partial" if part.is_file() else "missing"
            size = part.stat().st_size if part.is_file() else None
            out.append(Status(art, path, state, size, None, expected, checksum))
            continue
        digest = digests(path)["sha256"]
        state = "unpinned" if expected is None else ("verified" if digest == expected else "mismatch")
        out.append(Status(art, path, state, path.stat().st_size, digest, expected, checksum))
    return out


# ---------------------------------------------------------------------- install one file


def _install(options: FetchOptions, art: Artifact, source: str, produce: Callable[[Path], None],
             expected: str | None, reported: Resolved | None = None) -> str:
    """Produce the file at a temporary name beside the destination, check it, let pooch move it into place.

    Returns:
        the sha256 of the installed file.

    Raises:
        ChecksumMismatch, VerificationError: the temporary file is removed, nothing is under the final name.
        DownloadError: ``produce`` failed (a partial download is kept for resume).
    """
    import pooch

    pooch.get_logger().setLevel(logging.WARNING)
    dest = art.path(options.root)
    found: dict[str, str] = {}

    def downloader(url: str, output_file: str, _pooch: object) -> None:
        tmp = Path(output_file)
        produce(tmp)
        size = tmp.stat().st_size
        want_size = art.size if art.size is not None else (reported.size if reported else None)
        if want_size is not None and size != want_size:
            raise ChecksumMismatch(f"{dest}: {size:,} bytes from {source}, expected {want_size:,}; removed")
        algs = ("sha256", *[a for a in (reported.hashes if reported else {}) if a != "sha256"])
        found.update(digests(tmp, algs))
        if expected and found["sha256"] != expected:
            raise ChecksumMismatch(f"{dest}: sha256 {found['sha256']} of the file from {source} differs from the "
                                   f"expected {expected}; removed")
        for alg, want in (reported.hashes if reported else {}).items():
            if found.get(alg) != want:
                raise ChecksumMismatch(f"{dest}: {alg} {found.get(alg)} differs from {want} that "
                                       f"{reported.service if reported else 'the server'} reports; removed")
        verify_file(art, tmp, str(dest))

    pooch.retrieve(source, known_hash=f"sha256:{expected}" if expected else None, fname=dest.name,
                   path=dest.parent, downloader=downloader, progressbar=False)
    _restore_umask_mode(dest)
    return found["sha256"]


def _restore_umask_mode(path: Path) -> None:
    """Temporary files are created 0600; give the installed file the mode the umask asks for."""
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(path, 0o666 & ~umask)
    except OSError:
        pass


def _after_install(options: FetchOptions, art: Artifact, digest: str, source: str) -> str:
    path = art.path(options.root)
    _pin(options.root, art, digest, path.stat().st_size, source)
    if art.kind == "results":
        from ctxpose.data.predictions import write_released_npz

        npz = write_released_npz(path, expected_rows=art.rows)
        return f"plain copy {npz.name} (keypoints_3d, indexes)"
    return ""


def _candidates(options: FetchOptions, art: Artifact) -> list[str]:
    mirrors = [f"{m.rstrip('/')}/{art.dest}" for m in options.mirrors]
    return mirrors + [u.url for u in art.urls]


def _by_hand(options: FetchOptions, art: Artifact) -> str:
    folders = "; ".join(f.url for f in options.get_registry().folders)
    return (f"place the file by hand at {art.path(options.root)} (from {art.urls[0].url}"
            + (f" or the folders {folders}" if folders else "") + ") and run `ctxpose fetch-weights --verify`, "
            "or copy it into a folder and run `ctxpose fetch-weights --from FOLDER`")


def _fetch_one(options: FetchOptions, art: Artifact, session: SafeSession, progress: FetchProgress | None) -> Outcome:
    dest = art.path(options.root)
    expected, _ = _expected(art, read_lock(options.root))
    if dest.is_file():
        digest = digests(dest)["sha256"]
        if expected and digest == expected:
            return Outcome(art.name, dest, True, "verified", "already present")
        if not expected:
            detail = verify_file(art, dest)
            _after_install(options, art, digest, "found in place")
            return Outcome(art.name, dest, True, "pinned", f"found in place, {detail}")
        logger.warning("%s: sha256 %s differs from the expected %s; fetching it again", dest, digest, expected)
    part = dest.with_name(dest.name + PART_SUFFIX)
    tried = []
    for url in _candidates(options, art):
        try:
            resolved = resolve(url, session, options.settings, options.endpoints)

            def produce(tmp: Path, resolved: Resolved = resolved) -> None:
                download(resolved.url, part, session, options.settings,
                         (lambda event, n: progress(art.name, event, n)) if progress else None,
                         expected_size=art.size if art.size is not None else resolved.size)
                os.replace(part, tmp)

            digest = _install(options, art, url, produce, expected, resolved)
        except DownloadError as e:
            tried.append(str(e))
            continue
        except (ChecksumMismatch, VerificationError):
            part.unlink(missing_ok=True)
            raise
        extra = _after_install(options, art, digest, url)
        if progress:
            progress(art.name, "done", 0)
        return Outcome(art.name, dest, True, "downloaded", "; ".join(filter(None, [f"from {url}", extra])))
    raise FetchFailed(f"{art.name}: every URL failed: {' | '.join(tried)}; {_by_hand(options, art)}")


def fetch(options: FetchOptions, names: list[str], progress: FetchProgress | None = None) -> list[Outcome]:
    """Fetch artifacts (resuming partial downloads); each failure is recorded, the others go on.

    Returns:
        one :class:`Outcome` per artifact; ``ok`` False carries the one-line reason in ``detail``.
    """
    session = SafeSession()
    outcomes = []
    for art in options.get_registry().select(names):
        try:
            outcomes.append(_fetch_one(options, art, session, progress))
        except CtxposeError as e:
            outcomes.append(Outcome(art.name, art.path(options.root), False, "failed", str(e)))
    return outcomes


# ---------------------------------------------------------------------- --from DIR and --verify


def _find_in(folder: Path, art: Artifact) -> Path | None:
    rel = Path(*Path(art.dest).parts)
    for candidate in (folder / rel, folder / "data" / rel, folder / rel.name):
        if candidate.is_file():
            return candidate
    return None


def import_from(options: FetchOptions, folder: str | Path, names: list[str] | None = None,
                progress: FetchProgress | None = None) -> list[Outcome]:
    """Import files copied by hand into ``folder`` (as ``<dest>``, ``data/<dest>`` or just the file name),
    verified exactly like a download, then copied into place. Artifacts not found there are reported
    as "missing" (ok) when ``names`` is None, as failures when named."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CtxposeError(f"--from {folder}: not a folder")
    registry = options.get_registry()
    outcomes = []
    for art in registry.select(names) if names else registry.artifacts:
        dest = art.path(options.root)
        src = _find_in(folder, art)
        if src is None:
            outcomes.append(Outcome(art.name, dest, names is None, "missing",
                                    f"not in {folder} (looked for {art.dest} and {Path(art.dest).name})"))
            continue
        expected, _ = _expected(art, read_lock(options.root))

        def produce(tmp: Path, src: Path = src, name: str = art.name) -> None:
            if progress:
                progress(name, "start", 0)
                progress(name, "total", src.stat().st_size)
            shutil.copyfile(src, tmp)
            if progress:
                progress(name, "advance", tmp.stat().st_size)

        try:
            if dest.is_file() and expected and digests(dest)["sha256"] == expected:
                outcomes.append(Outcome(art.name, dest, True, "verified", "already present"))
                continue
            digest = _install(options, art, f"file://{src.resolve()}", produce, expected)
            extra = _after_install(options, art, digest, f"imported from {src}")
            outcomes.append(Outcome(art.name, dest, True, "imported", "; ".join(filter(None, [str(src), extra]))))
        except (CtxposeError, OSError) as e:
            text = str(e) if isinstance(e, CtxposeError) else f"{src}: {e.strerror}"
            outcomes.append(Outcome(art.name, dest, False, "failed", text))
    return outcomes


def verify_present(options: FetchOptions, names: list[str] | None = None) -> list[Outcome]:
    """Re-check every present artifact: digest against the registry or the pin, and the content; a present
    file without a pin is pinned once its content is verified."""
    outcomes = []
    for st in status(options, names):
        art = st.artifact
        if st.state in ("missing", "partial"):
            outcomes.append(Outcome(art.name, st.path, names is None, st.state, "not present"))
            continue
        if st.state == "mismatch":
            outcomes.append(Outcome(art.name, st.path, False, "mismatch",
                                    f"{st.path}: sha256 {st.sha256} differs from the expected {st.expected} "
                                    f"({st.checksum}); delete it and fetch again"))
            continue
        try:
            detail = verify_file(art, st.path)
        except VerificationError as e:
            outcomes.append(Outcome(art.name, st.path, False, "failed", str(e)))
            continue
        if st.state == "unpinned":
            _after_install(options, art, st.sha256 or "", "verified in place")
            outcomes.append(Outcome(art.name, st.path, True, "pinned", detail))
        else:
            outcomes.append(Outcome(art.name, st.path, True, "verified", detail))
    return outcomes


# ---------------------------------------------------------------------- released estimates -> keyed predictions


def keyed_predictions(options: FetchOptions, labels: Path | None = None) -> list[Outcome]:
    """Write ``<results>_predictions.npz`` keyed by (subject, action, trial, camera, frame) for each present
    released results file, and say how much of ``labels`` it covers.

    The frame table of the test split follows from the official frame counts; the training one needs
    ``labels`` made with ``--selection original`` (its frames were chosen by motion).
    """
    from ctxpose.data.h36m import metadata, selection
    from ctxpose.data.labels import load_labels, read_labels_meta
    from ctxpose.data.predictions import keyed_coverage, write_keyed_predictions

    rule = None
    if labels is not None:
        meta_sel = read_labels_meta(labels).get("selection")
        rule = meta_sel.get("rule") if isinstance(meta_sel, dict) else None
    outcomes = []
    for art in (a for a in options.get_registry().artifacts if a.kind == "results"):
        path = art.path(options.root)
        if not path.is_file():
            continue
        subjects = metadata.train_subjects() if art.split == "train" else metadata.test_subjects()
        if art.split == "val":
            table = selection.original_test_table()
        elif labels is not None and rule == "original":
            lab = load_labels(labels)
            table = selection.frame_table(lab.subject, lab.action, lab.trial, lab.camera, lab.frame, subjects)
        else:
            outcomes.append(Outcome(art.name, path, True, "skipped", "keyed training estimates need --labels made "
                                    "with `ctxpose preprocess h36m --selection original` (frames chosen by motion)"))
            continue
        target = path.with_name(f"{path.stem}_predictions.npz")
        try:
            n = write_keyed_predictions(path, table, target, source=f"{art.name} ({art.urls[0].url})")
        except CtxposeError as e:
            outcomes.append(Outcome(art.name, target, False, "failed", str(e)))
            continue
        detail = f"{n:,} (frame, camera) rows"
        if labels is not None:
            cov = keyed_coverage(target, labels, subjects)
            detail += (f"; {labels} ({art.split}, --selection {rule or 'unrecorded'}): {cov.rows_covered:,} of "
                       f"{cov.rows:,} rows have an estimate, {cov.missing:,} missing ({cov.frames_covered:,} of "
                       f"{cov.frames:,} frames)")
        outcomes.append(Outcome(art.name, target, True, "converted", detail))
    return outcomes
