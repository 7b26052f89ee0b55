"""``ctxpose fetch-weights``: the released weights, pelvis estimates and limb statistics, verified."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from ctxpose.weights.fetch import FetchOptions, Outcome


def main(
    names: Annotated[list[str] | None, typer.Argument(help="Artifacts to fetch (see --list).")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Fetch every artifact.")] = False,
    list_: Annotated[bool, typer.Option("--list", help="Show the registry and what is present locally.")] = False,
    verify: Annotated[bool, typer.Option("--verify", help="Re-check every present file (digest and content).")] = False,
    from_dir: Annotated[Path | None, typer.Option("--from", help="Import files copied by hand into this folder.",
                                                  file_okay=False)] = None,
    root: Annotated[Path | None, typer.Option(help="Data root (default $CTXPOSE_DATA or ./data).")] = None,
    mirror: Annotated[list[str] | None, typer.Option(help="URL prefix tried first (PREFIX/<dest>); also "
                                                          "$CTXPOSE_MIRROR.")] = None,
    labels: Annotated[Path | None, typer.Option(help="labels.npz: key the released estimates to it and report "
                                                     "coverage (training keys need --selection original labels).",
                                                dir_okay=False)] = None,
    timeout: Annotated[float, typer.Option(help="Read timeout, seconds.", min=0.1)] = 60.0,
    retries: Annotated[int, typer.Option(help="Retries per URL (resuming).", min=0)] = 4,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the results as JSON here.",
                                                  dir_okay=False)] = None,
) -> None:
    """Fetch, import or verify the original release's files; resumable, each file checked before it is placed.

    Example:

        ctxpose fetch-weights --list

        ctxpose fetch-weights contextpose-h36m limb-lengths algebraic-results-val --root data

        ctxpose fetch-weights --all --mirror https://mirror.example.org/ctxpose

        ctxpose fetch-weights --from /mnt/usb/pretrained --labels data/human36m/processed/labels.npz
    """
    from dataclasses import replace

    from rich.console import Console

    from ctxpose.weights.fetch import (
        FetchOptions,
        default_root,
        env_mirrors,
        fetch,
        import_from,
        keyed_predictions,
        verify_present,
    )
    from ctxpose.weights.http import HttpSettings

    options = FetchOptions(root=root or default_root(), mirrors=(*(mirror or ()), *env_mirrors()),
                           settings=replace(HttpSettings(), read_timeout=timeout, retries=retries))
    console = Console()
    if sum([bool(names) or all_, list_, verify, from_dir is not None]) > 1:
        raise typer.BadParameter("give one of NAME.../--all, --list, --verify, --from DIR")
    if list_:
        _print_status(console, options, json_out)
        return
    wanted = options.get_registry().names() if all_ else list(names or [])
    if not (wanted or verify or from_dir or labels):
        raise typer.BadParameter("nothing to do: give NAME..., --all, --list, --verify, --from DIR or --labels")
    if verify:
        outcomes = verify_present(options)
    elif from_dir is not None:
        with _progress(console) as hook:
            outcomes = import_from(options, from_dir, wanted or None, hook)
    elif wanted:
        with _progress(console) as hook:
            outcomes = fetch(options, wanted, hook)
    else:
        outcomes = []
    kinds = {a.name: a.kind for a in options.get_registry().artifacts}
    fetched_results = not verify and any(o.ok and o.action != "missing" and kinds.get(o.name) == "results"
                                         for o in outcomes)
    if fetched_results or labels is not None:
        outcomes += keyed_predictions(options, labels)
    _print_outcomes(console, outcomes, json_out)
    if not all(o.ok for o in outcomes):
        raise typer.Exit(code=1)


class _progress:
    """A rich download bar per artifact, fed by the library's progress hook."""

    def __init__(self, console: Console) -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(),
                            TransferSpeedColumn(), TimeRemainingColumn(), console=console, transient=False)
        self.tasks: dict[str, int] = {}

    def __enter__(self):
        self.bar.__enter__()
        return self.hook

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(*exc)

    def hook(self, name: str, event: str, n: int) -> None:
        task = self.tasks.get(name)
        if task is None:
            task = self.tasks[name] = self.bar.add_task(name, total=None)
        if event in ("start", "restart"):
            self.bar.update(task, completed=n)
        elif event == "total":
            self.bar.update(task, total=None if n < 0 else n)
        elif event == "advance":
            self.bar.advance(task, n)


def _print_status(console: Console, options: FetchOptions, json_out: Path | None) -> None:
    import json

    from rich.table import Table

    from ctxpose.utils.io import atomic_write_text
    from ctxpose.weights.fetch import status

    rows = status(options)
    table = Table(title=f"released files under {options.root}")
    for col in ("name", "kind", "destination", "size", "checksum", "state"):
        table.add_column(col, overflow="fold")
    colour = {"verified": "green", "mismatch": "red", "missing": "yellow", "partial": "yellow", "unpinned": "cyan"}
    for st in rows:
        size = f"{st.size / 1e6:.1f} MB" if st.size is not None else "-"
        state = st.state if st.state != "unpinned" else "present, not pinned yet (run --verify)"
        table.add_row(st.artifact.name, st.artifact.kind, st.artifact.dest, size,
                      st.checksum, f"[{colour[st.state]}]{state}[/]")
    console.print(table)
    console.print("checksum 'none published': no size or digest is published for these files; the first verified "
                  "file is pinned in ctxpose-weights.lock (trust on first use)", highlight=False)
    if json_out:
        data = [{"name": s.artifact.name, "dest": str(s.path), "state": s.state, "size": s.size, "sha256": s.sha256,
                 "expected_sha256": s.expected, "checksum": s.checksum} for s in rows]
        atomic_write_text(json_out, json.dumps(data, indent=1))


def _print_outcomes(console: Console, outcomes: list[Outcome], json_out: Path | None) -> None:
    import json

    from rich.console import Console
    from rich.table import Table

    from ctxpose.utils.io import atomic_write_text

    table = Table(title="fetch-weights")
    for col in ("name", "result", "file", "detail"):
        table.add_column(col, overflow="fold")
    for o in outcomes:
        if o.ok:
            table.add_row(o.name, f"[green]{o.action}[/]", str(o.path), o.detail)
        else:
            table.add_row(o.name, f"[red]{o.action}[/]", str(o.path), "")
    console.print(table)
    errors = Console(stderr=True)
    for o in outcomes:
        if not o.ok:
            errors.print(f"[red]error:[/red] {o.detail}", highlight=False, soft_wrap=True)
    if json_out:
        atomic_write_text(json_out, json.dumps([{"name": o.name, "ok": o.ok, "action": o.action,
                                                 "path": str(o.path), "detail": o.detail} for o in outcomes], indent=1))
