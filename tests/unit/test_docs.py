"""The README and docs/ stay true to the shipped command line.

Every `ctxpose ...` example (in shell code blocks and in inline code spans) is parsed against the real Typer app,
without running anything: the subcommand path must exist, every option must be one that command declares, and a
value given to an option with choices must be one of them. On a command's own page (docs/commands/<name>.md) an
inline span that starts with an option (`--amp bf16|fp16`) must be an option of that command. Every relative link
must reach a file, and every `#anchor` a heading of the file it points to. The README's test command is the one
.ci/run runs.
"""

from __future__ import annotations

import importlib
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer.main

from ctxpose.cli.app import app

ROOT = Path(__file__).resolve().parents[2]
SEPARATORS = {"&&", "||", ";", "|"}
SHELL_LANGS = {"bash", "sh", "shell", "console", ""}
FENCE = re.compile(r"^```(\S*)\s*$")
INLINE = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")
LINK = re.compile(r"!?\[[^\]\n]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
PLACEHOLDER = re.compile(r"^[A-Z][A-Z0-9_]*$|<|\.\.\.")


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


@dataclass(frozen=True)
class Example:
    where: str
    tokens: tuple[str, ...]  # the words after `ctxpose`
    fenced: bool


def _split_blocks(text: str) -> tuple[list[tuple[int, str, str]], list[tuple[int, str]]]:
    """(fenced lines as (line number, language, line), prose lines as (line number, line)).
    A backslash continuation is joined to the next line."""
    fenced: list[tuple[int, str, str]] = []
    prose: list[tuple[int, str]] = []
    lang: str | None = None
    pending = ""
    for n, line in enumerate(text.splitlines(), 1):
        m = FENCE.match(line.strip())
        if m:
            lang = m.group(1).lower() if lang is None else None
            continue
        if lang is None:
            prose.append((n, line))
        elif line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
        else:
            fenced.append((n, lang, pending + line))
            pending = ""
    return fenced, prose


def _words(text: str) -> list[str]:
    """Shell words; `[opt]` brackets are dropped and `a | b` inside brackets is not a pipe."""
    out: list[str] = []
    depth = 0
    for word in shlex.split(text, comments=True):
        opened = word.count("[")
        closed = word.count("]")
        if word == "|" and depth > 0:
            depth += opened - closed
            continue
        stripped = word.replace("[", "").replace("]", "")
        depth += opened - closed
        if stripped:
            out.append(stripped)
    return out


def _invocations(words: list[str]) -> list[list[str]]:
    """The argument lists of every `ctxpose` invocation (also `python -m ctxpose`, `torchrun ... -m ctxpose`)."""
    found = []
    for i, w in enumerate(words):
        if w == "ctxpose" and (i == 0 or words[i - 1] in SEPARATORS or words[i - 1] == "-m"):
            args = []
            for a in words[i + 1:]:
                if a in SEPARATORS:
                    break
                args.append(a)
            found.append(args)
    return found


def extract_examples(path: Path, text: str) -> list[Example]:
    rel = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    fenced, prose = _split_blocks(text)
    out = []
    for n, lang, line in fenced:
        if lang not in SHELL_LANGS or not re.search(r"(^|[\s;&|])ctxpose(\s|$)", line):
            continue
        for args in _invocations(_words(line)):
            out.append(Example(f"{rel}:{n}", tuple(args), True))
    for n, line in prose:
        for span in INLINE.findall(line):
            if span.startswith("ctxpose ") or span == "ctxpose":
                for args in _invocations(_words(span)):
                    out.append(Example(f"{rel}:{n}", tuple(args), False))
    return out


def root_command() -> Any:
    return typer.main.get_command(app)


def _leaves(cmd: Any) -> list[Any]:
    subs = getattr(cmd, "commands", None)
    if not subs:
        return [cmd]
    return [leaf for sub in subs.values() for leaf in _leaves(sub)]


def _find_param(cmd: Any, name: str) -> Any | None:
    for p in cmd.params:
        if p.param_type_name == "option" and name in (*p.opts, *p.secondary_opts):
            return p
    return None


def _check_value(cmd_name: str, param: Any, value: str) -> list[str]:
    choices = getattr(param.type, "choices", None)
    if not choices or PLACEHOLDER.search(value):
        return []
    bad = [v for v in value.split("|") if v not in choices]
    label = param.opts[0] if param.param_type_name == "option" else param.name
    return [f"`{cmd_name}` {label}: {v!r} is not one of {list(choices)}" for v in bad]


def check_args(cmd: Any, cmd_name: str, args: list[str], *, complete: bool) -> list[str]:
    """Problems with `args` given to the leaf (or group) command `cmd`; `complete`: required arguments must be
    there (a full example, not a span naming an option)."""
    problems: list[str] = []
    arguments = [p for p in cmd.params if p.param_type_name == "argument"]
    positional: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        if a.startswith("-") and len(a) > 1 and not re.match(r"^-\d", a):
            name, eq, inline_value = a.partition("=")
            if name == "--help":
                i += 1
                continue
            param = _find_param(cmd, name)
            if param is None:
                problems.append(f"`{cmd_name}` has no option {name}")
                i += 1
                continue
            if param.is_flag or getattr(param, "count", False):
                if eq:
                    problems.append(f"`{cmd_name}` {name} is a flag and takes no value")
                i += 1
                continue
            values = [inline_value] if eq else list(args[i + 1:i + 1 + param.nargs])
            for v in values:
                problems += _check_value(cmd_name, param, v)
            i += 1 + (0 if eq else len(values))
        else:
            positional.append(a)
            i += 1
    if getattr(cmd, "commands", None):
        return problems
    unlimited = any(p.nargs == -1 for p in arguments)
    capacity = sum(max(p.nargs, 0) for p in arguments)
    if not unlimited and len(positional) > capacity:
        problems.append(f"`{cmd_name}` takes {capacity} argument(s), the example gives {len(positional)}: "
                        f"{positional}")
    if complete:
        required = sum(max(p.nargs, 1) for p in arguments if p.required)
        if len(positional) < required:
            problems.append(f"`{cmd_name}` needs {required} argument(s), the example gives {len(positional)}")
    slots = [a for a in arguments for _ in range(max(a.nargs, 1))]
    for p, v in zip(slots, positional, strict=False):
        problems += _check_value(cmd_name, p, v)
    return problems


def check_example(root: Any, args: tuple[str, ...], *, complete: bool) -> list[str]:
    """Walk the subcommand path (`config list|show|check` names each alternative), then check the options."""
    cmds = [(root, "ctxpose")]
    rest = list(args)
    while rest and getattr(cmds[0][0], "commands", None) and not rest[0].startswith("-"):
        word = rest.pop(0)
        nxt = []
        for cmd, name in cmds:
            for alt in word.split("|"):
                sub = cmd.commands.get(alt)
                if sub is None:
                    return [f"`{name}` has no subcommand {alt!r} (it has {sorted(cmd.commands)})"]
                nxt.append((sub, f"{name} {alt}"))
        cmds = nxt
    problems: list[str] = []
    for cmd, name in cmds:
        is_group = bool(getattr(cmd, "commands", None))
        problems += check_args(cmd, name, rest, complete=complete and not is_group)
    return problems


def check_page_option_spans(root: Any, page: Path, text: str) -> list[str]:
    """On docs/commands/<name>.md, an inline span starting with an option belongs to that command."""
    cmd = root.commands.get(page.stem)
    if cmd is None:
        return [f"{page.name}: no command `ctxpose {page.stem}` for this page"]
    problems = []
    _, prose = _split_blocks(text)
    for n, line in prose:
        for span in INLINE.findall(line):
            if not re.match(r"^--[a-z0-9]", span):
                continue
            words = _words(span)
            results = [check_args(leaf, f"ctxpose {page.stem}", words, complete=False) for leaf in _leaves(cmd)]
            if all(results):
                problems.append(f"{page.name}:{n}: `{span}`: {results[0][0]}")
    return problems


def _slug(heading: str) -> str:
    s = heading.strip().lower().replace("`", "")
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def anchors(text: str) -> set[str]:
    fenced, prose = _split_blocks(text)
    return {_slug(m.group(1)) for _, line in prose if (m := re.match(r"^#{1,6}\s+(.*)$", line))}


def check_links(path: Path, text: str) -> list[str]:
    problems = []
    _, prose = _split_blocks(text)
    for n, line in prose:
        for target in LINK.findall(INLINE.sub("", line)):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):
                continue  # http(s), mailto: not checked offline
            file_part, _, anchor = target.partition("#")
            dest = (path.parent / file_part).resolve() if file_part else path
            if not dest.exists():
                problems.append(f"{path.name}:{n}: link {target} does not resolve ({dest} missing)")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest.read_text()):
                problems.append(f"{path.name}:{n}: link {target}: no heading #{anchor} in {dest.name}")
    return problems


@pytest.fixture(scope="module")
def root() -> Any:
    return root_command()


def test_every_command_example_parses_against_the_shipped_cli(root: Any) -> None:
    examples = [e for p in doc_files() for e in extract_examples(p, p.read_text())]
    fenced = [e for e in examples if e.fenced]
    # every command has an example somewhere in a code block
    named = {e.tokens[0] for e in fenced if e.tokens}
    assert set(root.commands) <= named, f"commands without a code-block example: {set(root.commands) - named}"
    problems = [f"{e.where}: {p}" for e in examples for p in check_example(root, e.tokens, complete=e.fenced)]
    assert not problems, "\n".join(problems)


def test_option_spans_on_command_pages_belong_to_the_command(root: Any) -> None:
    pages = sorted((ROOT / "docs" / "commands").glob("*.md"))
    assert pages
    problems = [p for page in pages for p in check_page_option_spans(root, page, page.read_text())]
    assert not problems, "\n".join(problems)


def test_every_relative_link_resolves() -> None:
    problems = [p for f in doc_files() for p in check_links(f, f.read_text())]
    assert not problems, "\n".join(problems)


def test_the_readme_test_command_is_what_ci_runs() -> None:
    fenced, _ = _split_blocks((ROOT / "README.md").read_text())
    readme = [line for _, lang, line in fenced if "pytest" in line]
    assert len(readme) == 1, readme
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
          if line.strip() and not line.startswith(("#", "set ", "cd "))]
    as_ci = [c.replace("pip install", "python -m pip install --quiet") if c.startswith("pip ") else c
             for c in (part.strip() for part in readme[0].split("&&"))]
    assert as_ci == ci


# The checker itself: it must refuse what the docs could get wrong.

def test_checker_refuses_removed_commands_options_and_choices(root: Any, tmp_path: Path) -> None:
    doc = tmp_path / "page.md"
    doc.write_text(
        "```bash\n"
        "ctxpose train configs/tiny_cpu.yaml --device cpu --no-such-option 3   # a removed option\n"
        "ctxpose frobnicate x                                                 # a removed command\n"
        "ctxpose preprocess h36m RAW OUT --selection everything               # a bad choice\n"
        "ctxpose export-3dhp                                                  # a missing argument\n"
        "ctxpose eval runs/r extra                                            # one argument too many\n"
        "```\n"
        "Inline: `ctxpose visualize pictures RUN` and `ctxpose train CFG --amp fp8|bf16`.\n")
    examples = extract_examples(doc, doc.read_text())
    assert len(examples) == 7
    problems = [check_example(root, e.tokens, complete=e.fenced) for e in examples]
    assert all(problems), [(e.tokens, p) for e, p in zip(examples, problems, strict=True)]
    assert "--no-such-option" in problems[0][0] and "frobnicate" in problems[1][0]
    assert "'everything'" in problems[2][0] and "fp8" in problems[6][0]
    good = extract_examples(doc, "`ctxpose train CFG --amp bf16|fp16 --max-steps 3 --no-val`")
    assert check_example(root, good[0].tokens, complete=False) == []


def test_checker_refuses_foreign_option_spans_and_broken_links(root: Any, tmp_path: Path) -> None:
    page = tmp_path / "train.md"
    page.write_text("Use `--gpus N` and `--amp bf16`, not `--workers 8` or `--amp fp8`.\n")
    problems = check_page_option_spans(root, page, page.read_text())
    assert len(problems) == 2 and "--workers" in problems[0] and "fp8" in problems[1]
    (tmp_path / "other.md").write_text("# A heading: `here`\n\n```bash\n# not a heading\n```\n")
    page.write_text("[ok](other.md#a-heading-here) [gone](missing.md) [bad](other.md#not-a-heading) "
                    "[web](https://example.org/x) `[in code](nowhere.md)`\n")
    problems = check_links(page, page.read_text())
    assert len(problems) == 2 and "missing.md" in problems[0] and "#not-a-heading" in problems[1]


# Names and paths the docs point at exist.

#: a dotted name (not a format marker such as "ctxpose.infer/1", which a slash follows)
DOTTED = re.compile(r"\bctxpose(?:\.[A-Za-z_][A-Za-z0-9_]*)+(?![\w.-]*/)")
REPO_PATH = re.compile(r"^(?:ctxpose|tests|benchmarks|tools|configs|docs)/[\w./*{},-]*$")


def _resolve(dotted: str) -> bool:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return False
        return True
    return False


def _code_text(path: Path) -> list[tuple[int, str]]:
    """Inline code spans and python code lines, with their line numbers."""
    fenced, prose = _split_blocks(path.read_text())
    out = [(n, line) for n, lang, line in fenced if lang == "python"]
    out += [(n, span) for n, line in prose for span in INLINE.findall(line)]
    return out


def check_names_and_paths(path: Path) -> list[str]:
    problems = []
    for n, code in _code_text(path):
        for dotted in DOTTED.findall(code):
            if not _resolve(dotted):
                problems.append(f"{path.name}:{n}: {dotted} does not exist")
        words = code.split()
        if len(words) == 1 and REPO_PATH.match(words[0]) and not any(c in words[0] for c in "*{<"):
            if not (ROOT / words[0]).exists():
                problems.append(f"{path.name}:{n}: {words[0]} does not exist")
    return problems


def test_named_modules_functions_and_files_exist() -> None:
    problems = [p for f in doc_files() for p in check_names_and_paths(f)]
    assert not problems, "\n".join(problems)


def test_checker_refuses_missing_names_and_files(tmp_path: Path) -> None:
    page = tmp_path / "api.md"
    page.write_text("`ctxpose.config.load_config`, `ctxpose/config.py` and the format `ctxpose.infer-multiview/1` "
                    "exist; `ctxpose.config.no_such_key`,\n"
                    "`ctxpose.no_such_module.f` and `ctxpose/data/no_such.py` do not.\n"
                    "```python\nfrom ctxpose.config import load_config\nctxpose.load_nothing(cfg)\n```\n")
    problems = check_names_and_paths(page)
    assert len(problems) == 4, problems
    assert "no_such_key" in problems[1] and "no_such_module" in problems[2] and "no_such.py" in problems[3]
    assert "load_nothing" in problems[0]


def test_the_readme_says_what_each_dependency_is_for() -> None:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [*project["dependencies"], *project["optional-dependencies"]["dev"]]
    names = {re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0].strip().lower() for r in requirements}
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## Dependencies"):]
    listed = {w.lower() for row in table.splitlines() if row.startswith("| ") and not row.startswith("| package")
              for w in re.findall(r"[A-Za-z][\w.-]*", row.split("|")[1])}
    assert names <= listed, f"dependencies the README does not explain: {sorted(names - listed)}"
