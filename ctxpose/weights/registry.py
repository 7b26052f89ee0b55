"""The registry of released files (``ctxpose/weights/registry.toml``, package data): parsed and checked once."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any

from ctxpose.errors import CtxposeError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

KINDS = ("network", "backbone", "results", "limb-prior", "detector")


class RegistryError(CtxposeError):
    """The registry file is malformed, or a name is not in it."""


@dataclass(frozen=True)
class Url:
    """One place an artifact is published, and where that was recorded."""

    url: str
    source: str


@dataclass(frozen=True)
class Artifact:
    """One released file.

    Attributes:
        name: short name used on the command line ("contextpose-h36m").
        description: what it is.
        dest: path relative to the data root, POSIX separators, inside the root.
        kind: how it is verified (see ``KINDS`` and registry.toml's header).
        urls: primary first, then mirrors.
        model: our config's ``model`` section overrides (network/backbone kinds).
        rows: expected row count (results kind), with ``rows_source``.
        split: "train" or "val" (results kind): whose frames the rows are.
        size, sha256: expected bytes and digest when published (None: trust on first use).
        sha256_prefix: the first hex digits of the sha256 that the published file name carries (torchvision's
            ``name-<8 hex>.pth`` convention), checked beside the trust-on-first-use pin; None: no such name.
        used_for: which setting the file is meant for.
    """

    name: str
    description: str
    dest: str
    kind: str
    urls: tuple[Url, ...]
    model: dict[str, Any] = field(default_factory=dict)
    rows: int | None = None
    rows_source: str = ""
    split: str | None = None
    size: int | None = None
    sha256: str | None = None
    sha256_prefix: str | None = None
    used_for: str = ""

    def path(self, root: Path) -> Path:
        """Where the file goes under ``root``."""
        return Path(root).joinpath(*PurePosixPath(self.dest).parts)


@dataclass(frozen=True)
class Folder:
    """A published folder holding several artifacts (named for manual placement, never fetched)."""

    url: str
    holds: str
    source: str


@dataclass(frozen=True)
class Registry:
    artifacts: tuple[Artifact, ...]
    folders: tuple[Folder, ...] = ()
    source: str = "registry.toml"

    def names(self) -> list[str]:
        return [a.name for a in self.artifacts]

    def get(self, name: str) -> Artifact:
        for a in self.artifacts:
            if a.name == name:
                return a
        raise RegistryError(f"unknown artifact {name!r}; expected one of {', '.join(self.names())} (see --list)")

    def select(self, names: list[str] | tuple[str, ...]) -> list[Artifact]:
        """Artifacts by name, in the given order, each once."""
        return [self.get(n) for n in dict.fromkeys(names)]


def _artifact(entry: dict[str, Any], where: str) -> Artifact:
    def need(key: str, kind: type) -> Any:
        if not isinstance(entry.get(key), kind):
            raise RegistryError(f"{where}: {key!r} missing or not a {kind.__name__}")
        return entry[key]

    name = need("name", str)
    kind = need("kind", str)
    if kind not in KINDS:
        raise RegistryError(f"{where} ({name}): kind {kind!r}, expected one of {KINDS}")
    dest = need("dest", str)
    parts = PurePosixPath(dest).parts
    if not parts or dest.startswith("/") or ".." in parts or "\\" in dest:
        raise RegistryError(f"{where} ({name}): dest {dest!r} must be a relative path inside the data root")
    urls = entry.get("url", [])
    if not isinstance(urls, list) or not urls or not all(isinstance(u, dict) and isinstance(u.get("url"), str)
                                                        and isinstance(u.get("source"), str) for u in urls):
        raise RegistryError(f"{where} ({name}): needs [[artifact.url]] entries with 'url' and 'source'")
    sha256 = entry.get("sha256")
    if sha256 is not None and (not isinstance(sha256, str) or len(sha256) != 64):
        raise RegistryError(f"{where} ({name}): sha256 must be 64 hex digits")
    prefix = entry.get("sha256_prefix")
    if prefix is not None and (not isinstance(prefix, str) or not 8 <= len(prefix) <= 64
                               or any(c not in "0123456789abcdefABCDEF" for c in prefix)):
        raise RegistryError(f"{where} ({name}): sha256_prefix must be 8 to 64 hex digits")
    if kind == "results" and entry.get("split") not in ("train", "val"):
        raise RegistryError(f"{where} ({name}): kind 'results' needs split = 'train' or 'val'")
    return Artifact(name=name, description=entry.get("description", ""), dest=dest, kind=kind,
                    urls=tuple(Url(u["url"], u["source"]) for u in urls), model=dict(entry.get("model", {})),
                    rows=entry.get("rows"), rows_source=entry.get("rows_source", ""),
                    split=entry.get("split"),
                    size=entry.get("size"), sha256=sha256.lower() if sha256 else None,
                    sha256_prefix=prefix.lower() if prefix else None,
                    used_for=entry.get("for", ""))


def parse_registry(text: str, source: str = "registry.toml") -> Registry:
    """Parse registry TOML (the shipped file's format).

    Raises:
        RegistryError: invalid TOML, missing fields, duplicate names or destinations.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise RegistryError(f"{source}: not valid TOML ({e})") from None
    if data.get("format") != 1:
        raise RegistryError(f"{source}: format {data.get('format')!r}, expected 1")
    arts = tuple(_artifact(e, f"{source} artifact {i}") for i, e in enumerate(data.get("artifact", [])))
    for attr in ("name", "dest"):
        values = [getattr(a, attr) for a in arts]
        dup = sorted({v for v in values if values.count(v) > 1})
        if dup:
            raise RegistryError(f"{source}: duplicate {attr} {dup}")
    folders = tuple(Folder(f.get("url", ""), f.get("holds", ""), f.get("source", "")) for f in data.get("folder", []))
    return Registry(arts, folders, source)


def load_registry(path: str | Path | None = None) -> Registry:
    """The shipped registry, or the TOML file at ``path``."""
    if path is None:
        text = resources.files("ctxpose.weights").joinpath("registry.toml").read_text(encoding="utf-8")
        return parse_registry(text, "ctxpose/weights/registry.toml")
    path = Path(path)
    try:
        return parse_registry(path.read_text(encoding="utf-8"), str(path))
    except OSError as e:
        raise RegistryError(f"{path}: cannot read the registry ({e.strerror})") from None
