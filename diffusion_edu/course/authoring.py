"""Notebook authoring: stamp the Colab badge and set-up cell, and generate exercises from solutions (issue tools).

One setting moves the course: ``[tool.diffusion-edu] repository`` and ``branch`` in ``pyproject.toml`` give
the Colab badge's link and the install URL of every notebook's set-up cell; ``diffusion-edu stamp`` rewrites
them. ``solutions/NN_*.ipynb`` are the source of the exercises: code between ``### BEGIN SOLUTION`` and
``### END SOLUTION`` becomes nbgrader's stub (``# YOUR CODE HERE`` + ``raise NotImplementedError()``), markdown
between the same markers becomes ``YOUR ANSWER HERE``, and ``diffusion-edu exercises`` writes ``exercises/``
(``--check`` fails on any drift instead). Cell metadata follows nbgrader's schema version 3, so an nbgrader
install accepts the notebooks. nbformat only.
"""
from __future__ import annotations

import copy
import re
import tomllib
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[2]  # the repository: diffusion_edu/course/authoring.py → ../../
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
CODE_STUB = ["# YOUR CODE HERE", "raise NotImplementedError()"]
MARKDOWN_STUB = "YOUR ANSWER HERE"
ROLE = "diffusion_edu"  # cell metadata key marking stamped cells: {"diffusion_edu": "badge" | "setup"}


def settings(root: Path = ROOT) -> dict:
    """``[tool.diffusion-edu]`` of pyproject.toml: repository (owner/name on GitHub) and branch."""
    return tomllib.loads((root / "pyproject.toml").read_text())["tool"]["diffusion-edu"]


def badge_source(path: str, setting: dict) -> str:
    url = f"https://colab.research.google.com/github/{setting['repository']}/blob/{setting['branch']}/{path}"
    return f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({url})"


def setup_source(setting: dict) -> str:
    return ("# Set-up: install the companion package only if it is missing (e.g. on Colab). Idempotent.\n"
            "import importlib.util, subprocess, sys\n"
            "if importlib.util.find_spec(\"diffusion_edu\") is None:\n"
            "    subprocess.run([sys.executable, \"-m\", \"pip\", \"install\", \"-q\",\n"
            f"                    \"git+https://github.com/{setting['repository']}@{setting['branch']}\"], check=True)")


def stamp(nb: nbformat.NotebookNode, path: str, setting: dict) -> nbformat.NotebookNode:
    """Put the badge first and the set-up cell second (replacing earlier stamps), and the python3 kernel."""
    cells = [c for c in nb.cells if c.get("metadata", {}).get(ROLE) not in ("badge", "setup")]
    badge = nbformat.v4.new_markdown_cell(badge_source(path, setting), metadata={ROLE: "badge"})
    setup = nbformat.v4.new_code_cell(setup_source(setting), metadata={ROLE: "setup"})
    nb.cells = [badge, setup] + cells
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for i, cell in enumerate(nb.cells):
        cell.id = f"cell-{i:02d}"  # stable ids: regenerating a notebook changes nothing that did not change
    return nb


def make_exercise(solution: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The hand-out version of a solution notebook: every marked region replaced by nbgrader's stub."""
    nb = copy.deepcopy(solution)
    for cell in nb.cells:
        if BEGIN in cell.source:
            cell.source = _strip(cell.source, CODE_STUB if cell.cell_type == "code" else [MARKDOWN_STUB])
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return nb


def _strip(source: str, stub: list[str]) -> str:
    out, inside = [], False
    for line in source.split("\n"):
        if line.strip() == BEGIN:
            inside, indent = True, line[: len(line) - len(line.lstrip())]
            out += [indent + s for s in stub]
        elif line.strip() == END:
            if not inside:
                raise ValueError(f"{END} without {BEGIN}")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"{BEGIN} without {END}")
    return "\n".join(out)


def tasks(nb: nbformat.NotebookNode) -> list[str]:
    """grade_ids of the solution cells (the learner's tasks), in order."""
    return [c.metadata["nbgrader"]["grade_id"] for c in nb.cells
            if c.metadata.get("nbgrader", {}).get("solution")]


def exercises(root: Path = ROOT, check: bool = False) -> list[str]:
    """Write exercises/NN_*.ipynb from solutions/ (or, with check, list the ones that differ); returns the drifted."""
    drifted, setting = [], settings(root)
    for src in sorted((root / "solutions").glob("*.ipynb")):
        target = root / "exercises" / src.name
        exercise = stamp(make_exercise(nbformat.read(src, as_version=4)), f"exercises/{src.name}", setting)
        text = nbformat.writes(exercise) + "\n"
        if not target.exists() or target.read_text() != text:
            drifted.append(target.name)
            if not check:
                target.write_text(text)
    stale = [p.name for p in (root / "exercises").glob("*.ipynb") if not (root / "solutions" / p.name).exists()]
    return drifted + stale


def notebooks(root: Path = ROOT) -> list[Path]:
    """Every notebook of the course: the chapters, the solutions and the hand-outs, sorted by path."""
    return sorted(p for d in ("notebooks", "solutions", "exercises") for p in (root / d).glob("*.ipynb"))


def stamp_all(root: Path = ROOT) -> list[str]:
    """Stamp every notebook in notebooks/ and solutions/ (exercises inherit theirs); returns the changed ones."""
    setting, changed = settings(root), []
    for path in sorted(p for d in ("notebooks", "solutions") for p in (root / d).glob("*.ipynb")):
        before = path.read_text()
        rel = path.relative_to(root).as_posix()
        after = nbformat.writes(stamp(nbformat.read(path, as_version=4), rel, setting)) + "\n"
        if after != before:
            path.write_text(after)
            changed.append(rel)
    return changed


MARKER = re.compile(r"###\s*(BEGIN|END)\s+SOLUTION")  # any spelling of a marker, for the no-leak test


def nbgrader(grade_id: str, *, solution: bool = False, grade: bool = False, points: int | None = None) -> dict:
    """Cell metadata in nbgrader's schema 3: a task (``solution``), a check (``grade`` with points, locked)
    or a written answer graded by hand (both)."""
    meta = {"grade_id": grade_id, "solution": solution, "grade": grade, "locked": grade and not solution,
            "schema_version": 3}
    if grade:
        meta["points"] = points if points is not None else 1
    return {"nbgrader": meta}
