"""`ctxpose --version`, `ctxpose config show|check`: exit codes and one-line errors."""

import sys
from pathlib import Path

import yaml
from typer.testing import CliRunner

from ctxpose import __version__
from ctxpose.cli.app import app
from tests.cli.in_process import run_in_process

ROOT = Path(__file__).parents[2]
runner = CliRunner()


run_main = run_in_process  # the entry point's main() (its error handling), without a new interpreter


def test_version_and_help():
    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and r.output.strip() == f"ctxpose {__version__}"
    r = runner.invoke(app, ["--help"])
    assert r.exit_code == 0 and "config" in r.output


def test_config_show_prints_resolved_yaml_with_overrides():
    r = runner.invoke(app, ["config", "show", str(ROOT / "configs" / "tiny_cpu.yaml"), "--set",
                            "train.batch_size=7", "--set", "model.volume_net.volume_size=32"])
    assert r.exit_code == 0, r.output
    shown = yaml.safe_load(r.output)
    assert shown["train"]["batch_size"] == 7 and shown["model"]["volume_net"]["volume_size"] == 32
    assert shown["model"]["backbone"]["num_layers"] == 18


def test_config_check_ok_and_errors_are_one_red_line_with_exit_1(tmp_path):
    r = run_main("config", "check", str(ROOT / "configs" / "human36m_contextpose.yaml"))
    assert r.returncode == 0 and "ok" in r.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  batch_sise: 3\n")
    r = run_main("config", "check", str(bad))
    assert r.returncode == 1
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "train.batch_sise: unknown key, did you mean train.batch_size?" in lines[0]
    assert "Traceback" not in r.stderr


def test_usage_error_exits_2():
    r = run_in_process("config", "check")
    assert r.returncode == 2


def test_exit_code_of_a_command_reaches_the_shell(monkeypatch):
    import pytest
    import typer

    from ctxpose.cli import app as app_module

    probe = typer.Typer()

    @probe.command()
    def fail() -> None:
        raise typer.Exit(code=3)

    @probe.command()
    def other() -> None:
        pass

    app_module.app.add_typer(probe, name="probe-exit")
    try:
        monkeypatch.setattr(sys, "argv", ["ctxpose", "probe-exit", "fail"])
        with pytest.raises(SystemExit) as e:
            app_module.run()
        assert e.value.code == 3
    finally:
        app_module.app.registered_groups.pop()


def test_config_check_paths_names_every_missing_file(tmp_path):
    root = tmp_path / "processed"
    root.mkdir()
    prior = tmp_path / "prior.h5"
    prior.write_bytes(b"x")
    base = ["--set", f"dataset.root={root}", "--set", f"dataset.limb_length_path={prior}",
            "--set", "model.backbone.init_weights=false"]
    cfg = str(ROOT / "configs" / "human36m_contextpose.yaml")
    r = run_in_process("config", "check", cfg, "--paths", *base, "--set", "model.volume_net.use_gt_pelvis=true")
    assert r.returncode == 0, r.stderr
    r = run_in_process("config", "check", cfg, "--paths", *base, "--set", "model.backbone.init_weights=true",
                 "--set", f"model.backbone.checkpoint={tmp_path / 'nope.pth'}")
    assert r.returncode == 1
    line = " ".join(r.stderr.split())  # rich may wrap the one logical line
    assert "model.backbone.checkpoint: file not found:" in line and "nope.pth" in line
    assert "train.pred_results_path: file not found" in line  # use_gt_pelvis is off in the paper setting
    assert "dataset.root" not in line


def test_config_list_shows_each_shipped_configs_whole_description(monkeypatch):
    """Every sentence of each config's header comment, not its first line cut mid-sentence; read back from the
    80-column table by joining each row's wrapped cell lines (compared without white space: a long path is
    folded mid-word)."""
    monkeypatch.setenv("COLUMNS", "80")
    r = runner.invoke(app, ["config", "list"])
    assert r.exit_code == 0, r.output
    rows: dict[str, list[str]] = {}
    name = None
    for line in r.output.splitlines():
        cells = [c.strip() for c in line.split("│")]
        if len(cells) != 4:  # borders, title, header rule
            continue
        if cells[1] and cells[1] != "name":
            name = cells[1]
            rows[name] = []
        if name and cells[2]:
            rows[name].append(cells[2])
    shipped = sorted((ROOT / "ctxpose" / "configs").glob("*.yaml"))
    assert sorted(rows) == sorted(p.stem for p in shipped)
    for path in shipped:
        comment = []
        for line in path.read_text().splitlines():
            if not line.startswith("# "):
                break
            comment.append(line[2:])
        described = " ".join(rows[path.stem])
        assert "".join(described.split()) == "".join(" ".join(comment).split()), path.name
        assert "…" not in described and described.endswith("."), path.name
    assert "Everything else equals human36m_contextpose.yaml." in " ".join(rows["human36m_contextpose_3dhp"])
