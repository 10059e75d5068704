"""The documentation ships with the project and agrees with it.

- docs/config.md has a row for every key of the config dataclasses, and only for those, with
  the key's type, default and allowed range as the schema declares them;
- docs/cli.md has a section for every command of the Typer app, listing every option (and
  only those), with its default;
- the site builds with ``mkdocs build --strict`` (no broken link or anchor, every page in
  the nav); README's links into docs/ resolve, README stays a front door;
- no user-facing text points outside the repository;
- the NumPy-only reader on docs/checkpoints.md gives what softmax gives.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

import numpy as np
import pytest
import yaml

from conftest import REPO
from softmax_cli.config import Config

DOCS = REPO / "docs"
README = REPO / "README.md"


# ------------------------------------------------------------------------ Markdown helpers
def table_rows(text: str) -> list[list[str]]:
    """The cells of every Markdown table row in ``text`` (header separator rows left out)."""
    rows = []
    for line in text.splitlines():
        if line.startswith("| ") and line.rstrip().endswith("|") and not line.startswith("| ---"):
            rows.append([cell.strip() for cell in line.strip()[1:-1].split("|")])
    return rows


def code_spans(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def sections(text: str) -> dict[str, str]:
    """``{heading: body}`` of the ``## `` sections of a page."""
    parts = re.split(r"^## (.+)$", text, flags=re.M)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts), 2)}


# ------------------------------------------------------------------ configuration reference
def config_fields(cls: type = Config, prefix: str = "") -> dict[str, tuple[Any, Any, dict]]:
    """``{dotted key: (annotation, default, field metadata)}`` for every key a config file
    may set: the leaves, and the optional sections (``train.augment``) with their keys."""
    hints = typing.get_type_hints(cls)
    found = {}
    for f in dataclasses.fields(cls):
        tp, key = hints[f.name], prefix + f.name
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        sections_in = [a for a in typing.get_args(tp) if dataclasses.is_dataclass(a)]
        if dataclasses.is_dataclass(tp):
            found.update(config_fields(tp, key + "."))
            continue
        found[key] = (tp, default, dict(f.metadata))
        for section in sections_in:
            found.update(config_fields(section, key + "."))
    return found


def type_name(tp: Any) -> str:
    """How docs/config.md names a type: ``number or null``, ``list of integers``, ..."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        return type_name(type(typing.get_args(tp)[0]))
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        named = " or ".join(type_name(a) for a in args if a is not type(None))
        return named + (" or null" if type(None) in args else "")
    if origin is list:
        return "list of " + {int: "integers", float: "numbers", str: "strings"}[typing.get_args(tp)[0]]
    if dataclasses.is_dataclass(tp):
        return "mapping"
    return {int: "integer", float: "number", bool: "boolean", str: "string"}.get(tp, str(tp))


def range_text(lo, hi, lo_open: bool, hi_open: bool) -> str:
    """A numeric range as docs/config.md writes it: ``[0, 1)``, ``> 0``, ``>= 1``."""
    def num(v) -> str:
        return str(int(v)) if float(v).is_integer() else repr(v)

    if hi is None:
        return f"{'>' if lo_open else '>='} {num(lo)}"
    if lo is None:
        return f"{'<' if hi_open else '<='} {num(hi)}"
    return f"{'(' if lo_open else '['}{num(lo)}, {num(hi)}{')' if hi_open else ']'}"


def allowed_values(tp: Any, metadata: dict) -> list[str] | None:
    """The code spans the "allowed" cell must hold, or None where it is free text."""
    if "range" in metadata:
        return [range_text(*metadata["range"])]
    if typing.get_origin(tp) is Literal:
        return [str(a) for a in typing.get_args(tp)]
    if tp is bool:
        return ["true", "false"]
    return None


def config_reference_problems(text: str) -> list[str]:
    """What docs/config.md gets wrong about the schema in softmax_cli/config.py (empty: nothing)."""
    rows: dict[str, list[str]] = {}
    problems = []
    for cells in table_rows(text):
        if len(cells) == 5 and code_spans(cells[0]):
            key = code_spans(cells[0])[0]
            if key in rows:
                problems.append(f"`{key}` has two rows")
            rows[key] = cells
    fields = config_fields()
    for key, (tp, default, metadata) in fields.items():
        if key not in rows:
            problems.append(f"no row for `{key}`; add | `{key}` | {type_name(tp)} | "
                            f"`{yaml.safe_dump(default, default_flow_style=True).strip().removesuffix('...').strip()}` | "
                            f"{', '.join(f'`{v}`' for v in allowed_values(tp, metadata) or [])} | (what it does) |")
            continue
        _, type_cell, default_cell, allowed_cell, what = rows[key]
        if type_cell != type_name(tp):
            problems.append(f"`{key}`: type '{type_cell}', the schema says '{type_name(tp)}'")
        spans = code_spans(default_cell)
        shown = yaml.safe_load(spans[0]) if len(spans) == 1 else "(not one value)"
        if shown != default or isinstance(shown, bool) != isinstance(default, bool):
            problems.append(f"`{key}`: default {default_cell}, the schema says {default!r}")
        expected = allowed_values(tp, metadata)
        if expected is not None and sorted(code_spans(allowed_cell)) != sorted(expected):   # choices in any order
            problems.append(f"`{key}`: allowed {allowed_cell}, the schema says {expected}")
        if not what:
            problems.append(f"`{key}`: says nothing about what it does")
    problems += [f"row for `{key}`, which is not a config key" for key in rows if key not in fields]
    return problems


def test_the_configuration_reference_matches_the_schema():
    problems = config_reference_problems((DOCS / "config.md").read_text(encoding="utf-8"))
    assert not problems, "docs/config.md:\n" + "\n".join(problems)


def test_the_configuration_check_sees_each_kind_of_drift():
    text = (DOCS / "config.md").read_text(encoding="utf-8")
    assert config_reference_problems(text.replace("| `train.epochs` | integer | `30` |", "| `train.epochs` | integer | `20` |")) \
        == ["`train.epochs`: default `20`, the schema says 30"]
    assert config_reference_problems(text.replace("| `0.1` | `[0, 1)` | The share", "| `0.1` | `[0, 1]` | The share")) \
        == ["`data.val_fraction`: allowed `[0, 1]`, the schema says ['[0, 1)']"]
    assert config_reference_problems(text.replace("| `model.dtype` | string |", "| `model.dtype` | number |")) \
        == ["`model.dtype`: type 'number', the schema says 'string'"]
    dropped = "\n".join(line for line in text.splitlines() if not line.startswith("| `train.max_norm`"))
    assert config_reference_problems(dropped) == [
        "no row for `train.max_norm`; add | `train.max_norm` | number or null | `null` | `> 0` | (what it does) |"]
    extra = text.replace("| `output.dir` |", "| `output.format` | string | `png` | | Invented. |\n| `output.dir` |")
    assert config_reference_problems(extra) == ["row for `output.format`, which is not a config key"]
    assert config_reference_problems(text.replace("`sgd` only: Nesterov momentum.", "")) \
        == ["`train.optimizer.nesterov`: says nothing about what it does"]


# ---------------------------------------------------------------- command-line reference
def cli_reference_problems(text: str) -> list[str]:
    """What docs/cli.md gets wrong about the Typer app's commands and options (empty: nothing)."""
    from typer.main import get_command

    from softmax_cli.cli import app

    group = get_command(app)
    commands = {"softmax": group, **{f"softmax {name}": cmd for name, cmd in group.commands.items()}}
    documented = {title: body for title, body in sections(text).items() if title.split()[0] == "softmax"}
    problems = [f"no section '## {title}'" for title in commands if title not in documented]
    problems += [f"section '## {title}' for a command the app does not have" for title in documented
                 if title not in commands]
    for title, cmd in commands.items():
        if title not in documented:
            continue
        body = documented[title]
        synopsis = re.search(r"```text\n(.*?)```", body, re.S)
        if synopsis is None or not synopsis.group(1).startswith(title):
            problems.append(f"{title}: no synopsis block starting with '{title}'")
            continue
        rows = {opt: cells for cells in table_rows(body) if len(cells) == 4
                for opt in code_spans(cells[0]) if opt.startswith("-")}
        options = {opt: p for p in cmd.params if p.param_type_name == "option" for opt in (*p.opts, *p.secondary_opts)}
        problems += [f"{title}: option {opt} is not in its table" for opt in options if opt not in rows]
        problems += [f"{title}: {opt} is not an option of the command" for opt in rows if opt not in options]
        for opt, p in options.items():
            if opt not in rows:
                continue
            _, value, default, what = rows[opt]
            if p.is_flag != (value == ""):
                problems.append(f"{title}: {opt} {'is a flag' if p.is_flag else 'takes a value'}, "
                                f"the value column says '{value}'")
            if p.default not in (None, False, (), []) and default != f"`{p.default}`":
                problems.append(f"{title}: {opt} default {default or '(none)'}, the command's is {p.default!r}")
            if opt in p.opts and opt not in synopsis.group(1) and title != "softmax":
                problems.append(f"{title}: {opt} is not in the synopsis")
        for p in cmd.params:
            if p.param_type_name == "argument":
                word = p.name.upper().removesuffix("S") + "..." if p.nargs == -1 else p.name.upper()
                if word not in synopsis.group(1):
                    problems.append(f"{title}: argument {word} is not in the synopsis")
    return problems


def test_the_command_line_reference_matches_the_app():
    problems = cli_reference_problems((DOCS / "cli.md").read_text(encoding="utf-8"))
    assert not problems, "docs/cli.md:\n" + "\n".join(problems)


def test_the_command_line_check_sees_each_kind_of_drift():
    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    no_quiet = "\n".join(line for line in text.splitlines() if not line.startswith("| `--quiet`, `-q`"))
    assert cli_reference_problems(no_quiet) == ["softmax train: option --quiet is not in its table",
                                                "softmax train: option -q is not in its table"]
    assert cli_reference_problems(text.replace("| `--samples` | `N` (>= 1) | `8` |", "| `--samples` | `N` (>= 1) | `10` |")) \
        == ["softmax gradcheck: --samples default `10`, the command's is 8"]
    invented = text.replace("| `--weights` |", "| `--colour` | | | Invented. |\n| `--weights` |")
    assert cli_reference_problems(invented) == ["softmax inspect: --colour is not an option of the command"]
    assert cli_reference_problems(text.replace("## softmax inspect", "## softmax show")) == [
        "no section '## softmax inspect'", "section '## softmax show' for a command the app does not have"]
    assert cli_reference_problems(text.replace("softmax gradcheck CONFIG [", "softmax gradcheck FILE [")) \
        == ["softmax gradcheck: argument CONFIG is not in the synopsis"]


# -------------------------------------------------------------------------------- the site
def test_the_site_builds_strictly_with_no_warning(tmp_path):
    """``mkdocs build --strict``: every page in the nav, no broken link or anchor."""
    beside = Path(sys.executable).parent / "mkdocs"
    mkdocs = str(beside) if beside.exists() else shutil.which("mkdocs")
    assert mkdocs, "mkdocs is not installed: pip install -e '.[test]' (the docs extra comes with it)"
    site = tmp_path / "site"
    proc = subprocess.run([mkdocs, "build", "--strict", "--config-file", str(REPO / "mkdocs.yml"),
                           "--site-dir", str(site)], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "WARNING" not in proc.stderr, proc.stderr
    for page in DOCS.glob("*.md"):
        built = site / ("index.html" if page.stem == "index" else f"{page.stem}/index.html")
        assert built.is_file(), f"{page.name} was not built"


def github_anchor(heading: str) -> str:
    """The anchor GitHub (and MkDocs, for these headings) gives a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def relative_links(path: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    return [t for t in re.findall(r"\]\(([^)\s]+)\)", text) if not re.match(r"[a-z]+:", t)]


def test_readme_links_into_docs_and_every_link_resolves():
    links = relative_links(README)
    assert "docs/index.md" in links and any(t.startswith("docs/math.md") for t in links)
    for target in links:
        file, _, anchor = target.partition("#")
        path = README.parent / file if file else README
        assert path.resolve().is_relative_to(REPO) and path.is_file(), f"README links to {target}: no such file"
        if anchor:
            headings = re.findall(r"^#+ (.+)$", path.read_text(encoding="utf-8"), flags=re.M)
            assert anchor in {github_anchor(h) for h in headings}, f"README links to {target}: no such heading"


def test_readme_is_a_front_door():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; move the detail into docs/"


def test_no_user_facing_text_points_outside_the_repository():
    texts = [README, *DOCS.rglob("*.md"), *(p for p in (REPO / "softmax_cli").rglob("*")
                                            if p.suffix in (".py", ".md", ".html", ".js", ".css", ".txt", ".json"))]
    hits = [f"{p.relative_to(REPO)}:{n}" for p in texts
            for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if "../shared" in line]
    assert not hits, hits


# ------------------------------------------------------------------------- checkpoint page
def test_the_checkpoint_pages_numpy_reader_gives_what_softmax_gives(digits_run):
    from softmax_cli.checkpoint import load_checkpoint

    block = re.search(r"```python\n(.*?)```", (DOCS / "checkpoints.md").read_text(encoding="utf-8"), re.S)
    namespace: dict = {}
    exec(compile(block.group(1), "docs/checkpoints.md", "exec"), namespace)
    ckpt = load_checkpoint(digits_run["best_checkpoint"])
    X = np.random.default_rng(0).uniform(0, 16, size=(50, 64))
    P, classes = namespace["predict_proba"](digits_run["best_checkpoint"], X)
    assert classes == ckpt.classes and ckpt.model.activation == "relu"
    np.testing.assert_allclose(P, ckpt.predict_proba(X), rtol=1e-5, atol=1e-6)
