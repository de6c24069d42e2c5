"""The grader's merge and score steps (``grade`` module docstring, steps 1 and 3).

Merging puts every official cell back in place around the learner's task cells; scoring reads each verdict from
its own check cell's outputs.
"""
from __future__ import annotations

import copy
import re
from collections import Counter
from pathlib import Path

import nbformat

from .authoring import MARKDOWN_STUB, ROOT
from .authoring import ROLE as STAMP
from ..checks import RESULT_MIME, STATUSES

WRONG_ASSIGNMENT = "none of the assignment's task cells were found: is this the right assignment?"
LEARNER = "diffusion_edu_grade"  # cell metadata in the merged notebook: "task" or "added", the learner's cells
# Code a task never needs, and forging would: flagged "review by hand" (a heuristic, not a guarantee).
SUSPICIOUS = re.compile(r"\bchecks\s*=(?!=)|\bchecks\.\w+\s*=(?!=)|\bsetattr\(|\bRESULTS\b|vnd\.diffusion-edu"
                        r"|DIFFUSION_EDU_\w+|diffusion_edu\.checks|sys\.modules|\bIPython\b|get_ipython|display_pub"
                        r"|\bevents\.register|post_run_cell|\bbuiltins\b|__import__")


def nbgrader_meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {}) or {}


def role(cell) -> str | None:
    """'task' (the learner writes it), 'answer' (a written answer, graded by hand), 'check', or None."""
    m = nbgrader_meta(cell)
    if m.get("solution"):
        return "answer" if m.get("grade") else "task"
    if m.get("grade"):
        return "check"
    return None


def checks_of(official) -> list[tuple[str, int]]:
    """(grade_id, points) of the official check cells, in order."""
    return [(nbgrader_meta(c)["grade_id"], int(nbgrader_meta(c).get("points", 0))) for c in official.cells if role(c) == "check"]


def answers_of(official) -> list[str]:
    return [nbgrader_meta(c)["grade_id"] for c in official.cells if role(c) == "answer"]


def official_notebook(assignment: str, exercises: str | Path | None = None) -> Path:
    """The hand-out of ``assignment`` ("02", "2" or "02_denoising_2d") in ``exercises`` (default: the course's)."""
    folder = Path(exercises) if exercises is not None else ROOT / "exercises"
    if not folder.is_dir():
        raise FileNotFoundError(f"exercises folder {str(folder)!r} not found: pass --exercises DIR, the course's "
                                "exercises/ folder (the official hand-outs)")
    key = str(assignment).removesuffix(".ipynb")
    available = sorted(folder.glob("*.ipynb"))
    found = [p for p in available if p.stem == key or (key.isdigit() and p.stem.split("_")[0] == key.zfill(2))]
    if len(found) != 1:
        raise ValueError(f"--assignment {assignment!r} should name one hand-out in {folder}: one of "
                         f"{', '.join(p.stem.split('_')[0] for p in available) or '(none there)'}")
    return found[0]


# ----------------------------------------------------------------------------------------------------- merge
def _defined(cell) -> str | None:
    """The first function or class a code cell defines (a task cell's is the learner's function)."""
    found = re.search(r"^\s*(?:def|class)\s+(\w+)", cell.source, re.MULTILINE) if cell.cell_type == "code" else None
    return found.group(1) if found else None


def _twin(cell, official, seen: set, free_tasks: set):
    """The official cell a submitted cell stands for, or None when the learner added it. In order: the same
    nbgrader grade_id; for an untagged cell, the same cell id as an untagged official cell (JupyterLab keeps
    ids); the same stamp (badge, set-up); the same text as an untagged official cell or a check (front ends
    that drop ids or metadata); and, for an untagged code cell, the same function as a task the learner has
    not written elsewhere. A cell tagged for another assignment matches nothing."""
    grade_id = nbgrader_meta(cell).get("grade_id")
    same_kind = [c for c in official.cells if c.cell_type == cell.cell_type]
    same_id = cell.get("id") is not None and grade_id is None
    rules = [
        lambda c: grade_id is not None and nbgrader_meta(c).get("grade_id") == grade_id,
        lambda c: same_id and c.get("id") == cell.get("id") and role(c) is None,
        lambda c: cell.metadata.get(STAMP) is not None and c.metadata.get(STAMP) == cell.metadata.get(STAMP),
        lambda c: c.get("id") not in seen and role(c) in (None, "check") and c.source.strip() == cell.source.strip(),
        lambda c: c.get("id") in free_tasks and grade_id is None and _defined(cell) is not None
        and _defined(cell) == _defined(c),
    ]
    for rule in rules:
        twin = next((c for c in same_kind if rule(c)), None)
        if twin is not None:
            return twin
    return None


def merge(official, submitted):
    """The notebook to run: the official cells in official order, the learner's version of each task cell,
    and the cells the learner added, each after the official cell it followed. Returns (notebook, notes).

    A task written twice counts in its last copy (as when the learner runs their notebook top to bottom);
    edits to official code cells are discarded; added cells lose any nbgrader metadata (they are never
    tasks or checks). In the result, the learner's cells carry ``metadata["diffusion_edu_grade"]`` =
    "task" or "added"."""
    learner: dict[str, object] = {}  # grade_id → the learner's version of that task cell
    copies: Counter = Counter()
    added: dict[str | None, list] = {}  # official cell id it follows → cells the learner added
    edited: list[str] = []
    anchor, seen = None, set()
    for cell in submitted.cells:
        free = {c.get("id") for c in official.cells if role(c) == "task" and nbgrader_meta(c)["grade_id"] not in learner}
        twin = _twin(cell, official, seen, free)
        if twin is None:
            added.setdefault(anchor, []).append(cell)
            continue
        anchor = twin.get("id")
        seen.add(anchor)
        if role(twin) in ("task", "answer"):
            learner[nbgrader_meta(twin)["grade_id"]] = cell
            copies[nbgrader_meta(twin)["grade_id"]] += 1
        elif twin.cell_type == "code" and cell.source.strip() != twin.source.strip():
            edited.append(nbgrader_meta(twin).get("grade_id") or str(twin.get("id")))

    used = {c.get("id") for c in official.cells}

    def theirs(anchor_id) -> list:
        out = []
        for cell in map(copy.deepcopy, added.get(anchor_id, [])):
            cell.metadata.pop("nbgrader", None)
            cell.metadata[LEARNER] = "added"
            if not cell.get("id") or cell["id"] in used:  # unique ids, also for notebooks saved without them
                cell["id"] = f"added-{len(used)}"
            used.add(cell["id"])
            out.append(cell)
        return out

    cells = theirs(None)
    for cell in official.cells:
        own = copy.deepcopy(cell)
        mine = learner.get(nbgrader_meta(cell).get("grade_id", ""))
        if mine is not None:
            own.source = mine.source
            own.metadata[LEARNER] = "task"
        cells.append(own)
        cells += theirs(cell.get("id"))
    for cell in cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None

    notes = [] if learner else [WRONG_ASSIGNMENT]
    missing = [nbgrader_meta(c).get("grade_id") or c.get("id") for c in official.cells
               if c.get("id") not in seen and (role(c) or c.cell_type == "code")]
    if missing:
        notes.append(f"restored {len(missing)} official cell(s) missing from the submission: "
                     + ", ".join(map(str, missing[:6])) + (" …" if len(missing) > 6 else ""))
    if edited:
        notes.append(f"discarded the learner's edits to {len(edited)} official code cell(s): " + ", ".join(edited[:6]))
    notes += [f"{n} cells hold task {g}: the last one was graded" for g, n in copies.items() if n > 1]
    code = [c.source for c in cells if c.metadata.get(LEARNER) and c.cell_type == "code"]
    flagged = sorted({m.group(0) for source in code for m in SUSPICIOUS.finditer(source)})
    if flagged:
        notes.append("review by hand: the learner's code touches the checks machinery (" + ", ".join(flagged) + ")")
    return nbformat.from_dict({**official, "cells": cells}), notes


# ----------------------------------------------------------------------------------------------------- score
def score(executed, ran: set[int]) -> dict[str, dict]:
    """Each check's verdict from its own cell's outputs: {grade_id: {"status", "message"}}. The cell must hold
    exactly one verdict, for its own task (check ``check_X`` tests task ``X``)."""
    verdicts = {}
    for index, cell in enumerate(executed.cells):
        if role(cell) != "check":
            continue
        grade_id = nbgrader_meta(cell)["grade_id"]
        task = grade_id.removeprefix("check_")
        bundles = [o["data"][RESULT_MIME] for o in cell.get("outputs", [])
                   if o.get("output_type") == "display_data" and RESULT_MIME in o.get("data", {})]
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        if index not in ran:
            verdict = {"status": "not run", "message": "this check cell did not run"}
        elif errors:  # the check cell itself raised (SystemExit, a NameError for a missing function, a timeout…)
            verdict = {"status": "error", "message": one_line(errors[-1])}
        elif not bundles:
            verdict = {"status": "error", "message": "the check reported no result"}
        elif len(bundles) == 1 and bundles[0].get("task") == task and bundles[0].get("status") in STATUSES:
            verdict = {"status": bundles[0]["status"], "message": str(bundles[0].get("message", ""))}
        else:
            verdict = {"status": "error", "message": f"{len(bundles)} verdicts in this check cell where one, for "
                                                     f"{task!r}, was expected: review by hand"}
        verdicts[grade_id] = verdict
    return verdicts


def one_line(error: dict) -> str:
    text = f"{error.get('ename', 'Error')}: {error.get('evalue', '')}".strip().rstrip(":")
    return text if len(text) <= 160 else text[:157] + "…"


def answer_text(cell, handed_out) -> str:
    """'answered' unless the written answer is still as handed out (question + stub), the stub, or empty."""
    text = cell.source.strip()
    return "blank" if text in ("", MARKDOWN_STUB, handed_out.source.strip()) else "answered"


def label(cell) -> str:
    """How the notes name a cell: the task, the learner's own cell (by its first line), or the official one."""
    mark = cell.metadata.get(LEARNER)
    if mark == "task":
        return f"task {nbgrader_meta(cell)['grade_id']}"
    if mark == "added":
        first = next((line.strip() for line in cell.source.splitlines() if line.strip()), "")
        return f"learner's cell “{first[:40]}{'…' if len(first) > 40 else ''}”"
    return f"official cell {nbgrader_meta(cell).get('grade_id') or cell.get('id')}"


# ----------------------------------------------------------------------------------------------------- one submission
