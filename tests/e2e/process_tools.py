"""Watching preprocessing runs as processes, for the signal tests: /proc, the manifest, the output folder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def start(*args: str) -> subprocess.Popen:
    """``python -m ctxpose ARGS`` in its own session (a group signal reaches it and its workers, not pytest)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    return subprocess.Popen([sys.executable, "-m", "ctxpose", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, start_new_session=True)


def recorded(out: Path) -> dict:
    """The sequences ``out/manifest.json`` records (empty while it does not exist or is being replaced)."""
    try:
        return json.loads((out / "manifest.json").read_text())["sequences"]
    except (OSError, ValueError, KeyError):
        return {}


def wait_for(condition, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    """Poll ``condition()`` every 20 ms; fail if ``proc`` ends first or after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "timed out waiting for the run to make progress"
        time.sleep(0.02)


def parents() -> dict[int, int]:
    """pid -> parent pid of every process (from /proc/<pid>/stat)."""
    out = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            out[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return out


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (children, grandchildren...)."""
    table, found, frontier = parents(), set(), {pid}
    while frontier:
        frontier = {p for p, parent in table.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")  # a zombie has exited and only waits to be reaped


def all_gone(pids: set[int], within: float = 15.0) -> bool:
    """Whether every process of ``pids`` has exited within ``within`` seconds (polled every 50 ms): one that was
    told to stop, or whose parent died, may still be tearing down (multiprocessing's resource tracker exits on
    its parent's exit, a worker on PR_SET_PDEATHSIG's signal)."""
    deadline = time.monotonic() + within
    while [p for p in pids if alive(p)] and time.monotonic() < deadline:
        time.sleep(0.05)
    return not [p for p in pids if alive(p)]


def files(out: Path) -> dict[str, tuple[int, int]]:
    """relative path -> (size, mtime in ns) of every file under ``out``."""
    return {str(p.relative_to(out)): (p.stat().st_size, p.stat().st_mtime_ns) for p in out.rglob("*") if p.is_file()}


def temporaries(out: Path) -> list[Path]:
    """Hidden files under ``out``: atomic writes' temporaries (and extracted archive members' folder)."""
    return [p for p in out.rglob(".*") if p.is_file()]


def workers_of(pid: int) -> list[int]:
    """The worker processes below ``pid`` (started by multiprocessing's spawn method; not its resource tracker)."""
    found = []
    for child in descendants(pid):
        try:
            if b"multiprocessing.spawn" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.append(child)
        except OSError:
            continue
    return found


def interrupt(proc: subprocess.Popen, out: Path, target: str, sequences: int) -> dict:
    """Ctrl-C a running ``preprocess --workers 2`` once it recorded a sequence; check what every dataset
    guarantees; return the manifest's sequences.

    ``target`` "group" signals the whole process group (Ctrl-C in a terminal), "parent" only the command
    (``kill -INT``), "term" sends the command SIGTERM (``kill``). Checked: exit 130 with the "stopped:" line and
    no traceback, no worker left, every shard on disk recorded in the manifest and in the report (marked
    interrupted), queued sequences not started (fewer than ``sequences`` recorded), no temporary file.
    """
    wait_for(lambda: len(recorded(out)) >= 1, proc)
    workers = descendants(proc.pid)  # the workers and multiprocessing's resource tracker
    assert len(workers_of(proc.pid)) >= 2  # the run is parallel
    if target == "group":
        os.killpg(proc.pid, signal.SIGINT)
    else:
        os.kill(proc.pid, signal.SIGTERM if target == "term" else signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "stopped:" in stdout and "run the same command again" in stdout and "Traceback" not in stderr
    assert all_gone(workers)
    done = recorded(out)
    shards = sorted(str(p.relative_to(out / "parts").with_suffix("")) for p in (out / "parts").rglob("*.npz"))
    assert sorted(done) == shards  # every sequence that finished is in the manifest
    assert 1 <= len(done) < sequences  # stopped: the queued sequences were not worked through
    assert not temporaries(out)  # no partial file
    report = json.loads((out / "preprocess_report.json").read_text())
    assert report["interrupted"] and sorted(r["key"] for r in report["done"]) == sorted(done)
    return done


def kill_parent(proc: subprocess.Popen, out: Path, sequences: int) -> None:
    """SIGKILL a running ``preprocess --workers 2`` once it wrote a crop; check its workers die with it (within
    15 s), write nothing afterwards and leave no temporary file."""
    wait_for(lambda: any((out / "images").rglob("*.jpg")) if (out / "images").is_dir() else False, proc)
    children = descendants(proc.pid)  # the workers and multiprocessing's resource tracker
    assert len(workers_of(proc.pid)) >= 2
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    assert all_gone(children), "workers outlived their parent"
    before = files(out)
    time.sleep(1.5)
    assert files(out) == before  # nothing is written any more
    assert not temporaries(out)  # the workers removed the crop they were writing
    assert len(recorded(out)) < sequences


SCRIPT = """
import json, sys
from {module} import {options}, {function}


def main():
    with open(sys.argv[3], "a") as f:  # counts how often the script's work runs
        f.write("ran\\n")
    report = {function}(sys.argv[1], sys.argv[2], {options}({settings}))
    print(json.dumps(report.to_dict()))


if __name__ == "__main__":  # spawned workers import this script: they must not run main() again
    main()
"""


def run_api_script(tmp_path: Path, raw: Path, module: str, function: str, options: str, settings: str,
                   guard: bool = True) -> subprocess.CompletedProcess:
    """Run ``function(raw, out, options(settings))`` from a script (``guard``: under ``if __name__ ==
    "__main__":``, else at its top level) in a fresh interpreter.

    With the guard: check it ran once (workers did not re-run it) and wrote the report it printed; return
    the report. Without: return the finished process.
    """
    script, runs, out = tmp_path / "prep.py", tmp_path / "runs.txt", tmp_path / "out"
    text = SCRIPT.format(module=module, function=function, options=options, settings=settings)
    script.write_text(text if guard else text.replace('if __name__ == "__main__":', "if True:"))
    proc = subprocess.run([sys.executable, str(script), str(raw), str(out), str(runs)], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if not guard:
        return proc
    assert proc.returncode == 0, proc.stderr
    assert runs.read_text() == "ran\n"  # the workers did not re-run the script
    printed = json.loads(proc.stdout.strip().splitlines()[-1])
    assert json.loads((out / "preprocess_report.json").read_text()) == printed  # the command's report, too
    return printed


class WorkerKiller:
    """A ``progress`` callback that SIGKILLs one of this process's preprocessing workers at the first crop."""

    def __init__(self) -> None:
        self.killed: list[int] = []

    def __call__(self, event: str, info: dict) -> None:
        if event == "frames" and not self.killed:
            victim = workers_of(os.getpid())[0]
            os.kill(victim, signal.SIGKILL)
            self.killed.append(victim)


def the_killed_sequence(report, killer: WorkerKiller, sequences: int) -> str:
    """Check that the killed worker failed exactly its sequence, saying how it died, and a new worker did the
    others; return that sequence."""
    assert killer.killed and len(report.failed) == 1 and len(report.done) == sequences - 1
    (key, error), = report.failed.items()
    assert error == "its worker process died (killed by signal 9 (SIGKILL; out of memory?))"
    return key
