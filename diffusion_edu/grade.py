"""The classroom grader: ``diffusion-edu grade SUBMISSIONS... --assignment NN --out grades.csv``.

For each submitted notebook, in its own worker process and its own fresh kernel:

1. **Merge** (``merge``): the official hand-out ``exercises/NN_*.ipynb`` is the skeleton. Only the learner's
   task cells (nbgrader ``solution`` cells, matched by ``grade_id``) and the cells the learner added are kept;
   every other cell, the check cells above all, is put back as handed out. Editing or deleting a check
   cell gains nothing.
2. **Run** (``_worker``): every code cell, top to bottom, under a per-cell and a per-notebook time limit
   and a memory limit (``RLIMIT_AS`` on the worker, which the kernel inherits). A cell that times out is
   interrupted and grading goes on; a kernel that dies (``os._exit``, ``exit()``, a crash) ends the run and
   the checks after it count as not run. ``DIFFUSION_EDU_GRADER=1`` makes each check emit its verdict as a
   display output of MIME type ``checks.RESULT_MIME``.
3. **Score** (``score``): a check's verdict is the last such output *of its own check cell*, so printing
   "✅" anywhere, or emitting the bundle from another cell, forges nothing. Points come from the check
   cells' nbgrader metadata; written answers (markdown task cells) are listed for grading by hand.

One CSV row per submission is written (and flushed) as soon as it is graded, so a crash halfway loses
nothing. Broken or hostile submissions (invalid JSON, not a notebook, infinite loops, ``sys.exit``,
``os._exit``, huge allocations, exceptions anywhere) each get a row that says what happened.

What this cannot stop: the grader limits a submission's time, memory and output; it is not a sandbox, and
code running as the grader's user can reach what that user can. Code written to subvert
``diffusion_edu.checks`` from inside the kernel (rebinding ``checks``, patching the module) runs in the same
kernel as the checks, as in nbgrader. Task cells and added cells that touch the checks machinery are flagged
in the notes column for a human to look at. Results of a worker that did not exit cleanly are discarded.
"""
from __future__ import annotations

import copy
import csv
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import nbformat

from .authoring import MARKDOWN_STUB, ROOT
from .authoring import ROLE as STAMP
from .bench import proc_memory_mib
from .checks import RESULT_MIME, STATUSES

KERNEL = "diffusion-edu-grader"  # a kernelspec written per run, pointing at this very interpreter
WRONG_ASSIGNMENT = "none of the assignment's task cells were found: is this the right assignment?"
LEARNER = "diffusion_edu_grade"  # cell metadata in the merged notebook: "task" or "added", the learner's cells
OUTPUT_CAP = 1_000_000  # characters of output kept per cell: a print loop must not fill the worker's memory
# Code a task never needs, and forging would: flagged "review by hand" (a heuristic, not a guarantee).
SUSPICIOUS = re.compile(r"\bchecks\s*=(?!=)|\bchecks\.\w+\s*=(?!=)|\bsetattr\(|\bRESULTS\b|vnd\.diffusion-edu"
                        r"|DIFFUSION_EDU_\w+|diffusion_edu\.checks|sys\.modules|\bIPython\b|get_ipython|display_pub"
                        r"|\bevents\.register|post_run_cell|\bbuiltins\b|__import__")


@dataclass(frozen=True)
class Limits:
    """Per-submission limits. ``fast`` runs the notebooks in the course's fast mode (checks are unaffected)."""

    cell_seconds: float = 120.0
    notebook_seconds: float = 900.0
    memory_mb: int = 4096
    fast: bool = True

    def __post_init__(self):
        for name in ("cell_seconds", "notebook_seconds", "memory_mb"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")


# ----------------------------------------------------------------------------------------------------- the roles
def _meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {}) or {}


def _role(cell) -> str | None:
    """'task' (the learner writes it), 'answer' (a written answer, graded by hand), 'check', or None."""
    meta = _meta(cell)
    if meta.get("solution"):
        return "answer" if meta.get("grade") else "task"
    if meta.get("grade"):
        return "check"
    return None


def checks_of(official) -> list[tuple[str, int]]:
    """(grade_id, points) of the official check cells, in order."""
    return [(_meta(c)["grade_id"], int(_meta(c).get("points", 0))) for c in official.cells if _role(c) == "check"]


def answers_of(official) -> list[str]:
    return [_meta(c)["grade_id"] for c in official.cells if _role(c) == "answer"]


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
    grade_id = _meta(cell).get("grade_id")
    same_kind = [c for c in official.cells if c.cell_type == cell.cell_type]
    same_id = cell.get("id") is not None and grade_id is None
    rules = [
        lambda c: grade_id is not None and _meta(c).get("grade_id") == grade_id,
        lambda c: same_id and c.get("id") == cell.get("id") and _role(c) is None,
        lambda c: cell.metadata.get(STAMP) is not None and c.metadata.get(STAMP) == cell.metadata.get(STAMP),
        lambda c: c.get("id") not in seen and _role(c) in (None, "check") and c.source.strip() == cell.source.strip(),
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
        free = {c.get("id") for c in official.cells if _role(c) == "task" and _meta(c)["grade_id"] not in learner}
        twin = _twin(cell, official, seen, free)
        if twin is None:
            added.setdefault(anchor, []).append(cell)
            continue
        anchor = twin.get("id")
        seen.add(anchor)
        if _role(twin) in ("task", "answer"):
            learner[_meta(twin)["grade_id"]] = cell
            copies[_meta(twin)["grade_id"]] += 1
        elif twin.cell_type == "code" and cell.source.strip() != twin.source.strip():
            edited.append(_meta(twin).get("grade_id") or str(twin.get("id")))

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
        mine = learner.get(_meta(cell).get("grade_id", ""))
        if mine is not None:
            own.source = mine.source
            own.metadata[LEARNER] = "task"
        cells.append(own)
        cells += theirs(cell.get("id"))
    for cell in cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None

    notes = [] if learner else [WRONG_ASSIGNMENT]
    missing = [_meta(c).get("grade_id") or c.get("id") for c in official.cells
               if c.get("id") not in seen and (_role(c) or c.cell_type == "code")]
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
        if _role(cell) != "check":
            continue
        grade_id = _meta(cell)["grade_id"]
        task = grade_id.removeprefix("check_")
        bundles = [o["data"][RESULT_MIME] for o in cell.get("outputs", [])
                   if o.get("output_type") == "display_data" and RESULT_MIME in o.get("data", {})]
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        if index not in ran:
            verdict = {"status": "not run", "message": "this check cell did not run"}
        elif errors:  # the check cell itself raised (SystemExit, a NameError for a missing function, a timeout…)
            verdict = {"status": "error", "message": _one_line(errors[-1])}
        elif not bundles:
            verdict = {"status": "error", "message": "the check reported no result"}
        elif len(bundles) == 1 and bundles[0].get("task") == task and bundles[0].get("status") in STATUSES:
            verdict = {"status": bundles[0]["status"], "message": str(bundles[0].get("message", ""))}
        else:
            verdict = {"status": "error", "message": f"{len(bundles)} verdicts in this check cell where one, for "
                                                     f"{task!r}, was expected: review by hand"}
        verdicts[grade_id] = verdict
    return verdicts


def _one_line(error: dict) -> str:
    text = f"{error.get('ename', 'Error')}: {error.get('evalue', '')}".strip().rstrip(":")
    return text if len(text) <= 160 else text[:157] + "…"


def _answer(cell, handed_out) -> str:
    """'answered' unless the written answer is still as handed out (question + stub), the stub, or empty."""
    text = cell.source.strip()
    return "blank" if text in ("", MARKDOWN_STUB, handed_out.source.strip()) else "answered"


def _label(cell) -> str:
    """How the notes name a cell: the task, the learner's own cell (by its first line), or the official one."""
    mark = cell.metadata.get(LEARNER)
    if mark == "task":
        return f"task {_meta(cell)['grade_id']}"
    if mark == "added":
        first = next((line.strip() for line in cell.source.splitlines() if line.strip()), "")
        return f"learner's cell “{first[:40]}{'…' if len(first) > 40 else ''}”"
    return f"official cell {_meta(cell).get('grade_id') or cell.get('id')}"


# ----------------------------------------------------------------------------------------------------- one submission
def grade_one(path: str | Path, official_path: str | Path, limits: Limits = Limits(),
              feedback: str | Path | None = None, threads: int = 1) -> dict:
    """Grade one submission; returns its CSV row (a dict). Never raises for a bad submission. ``feedback``:
    where to write the executed notebook, if anywhere."""

    path, start = Path(path), time.monotonic()
    official = nbformat.read(official_path, as_version=4)
    checks, answers = checks_of(official), answers_of(official)
    row = {"file": str(path), "status": "", **{g: "not run" for g, _ in checks}, **{a: "" for a in answers},
           "points": 0, "max_points": sum(p for _, p in checks), "by_hand_max_points": by_hand_points(official),
           "seconds": 0.0, "peak_memory_mb": "", "notes": ""}

    def finish(status: str, notes: list[str]) -> dict:
        row["status"], row["notes"] = status, " | ".join(n for n in notes if n)
        row["seconds"] = round(time.monotonic() - start, 1)
        return row

    if path.suffix != ".ipynb":
        return finish("not a notebook", [f"expected a Jupyter notebook (.ipynb), got {path.name!r}"])
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        return finish("unreadable", ["not text: the file is not a notebook saved by Jupyter"])
    except json.JSONDecodeError as err:
        return finish("unreadable", [f"invalid JSON at line {err.lineno}, column {err.colno}: {err.msg}"])
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list) or data.get("nbformat") != 4:
        return finish("unreadable", ["valid JSON but not a Jupyter notebook (nbformat 4 with a list of cells)"])
    try:
        submitted = nbformat.reads(json.dumps(data), as_version=4)
        nbformat.validate(submitted)
    except Exception as err:  # nbformat's own words say what is malformed
        return finish("unreadable", [f"malformed notebook: {type(err).__name__}: {str(err)[:120]}"])

    merged, notes = merge(official, submitted)
    handed_out = {_meta(c)["grade_id"]: c for c in official.cells if _role(c) == "answer"}
    for cell in merged.cells:
        if _role(cell) == "answer":
            row[_meta(cell)["grade_id"]] = _answer(cell, handed_out[_meta(cell)["grade_id"]])
    with tempfile.TemporaryDirectory(prefix="diffusion-edu-grade-") as tmp:
        tmp = Path(tmp)
        nbformat.write(merged, tmp / "merged.ipynb")
        report = _run_worker(tmp, limits, threads)
        executed = tmp / "executed.ipynb"
        if not executed.exists():
            return finish("not graded", notes + [report.get("stopped") or "the grader's worker failed"])
        executed = nbformat.read(executed, as_version=4)
        if feedback is not None:
            Path(feedback).parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(executed, feedback)
    row["peak_memory_mb"] = report.get("peak_memory_mb") or ""
    verdicts = score(executed, set(report.get("ran", [])))
    for grade_id, verdict in verdicts.items():
        row[grade_id] = verdict["status"]
    row["points"] = sum(p for g, p in checks if row[g] == "passed")
    # Causes first (errors in the learner's cells and the official ones), then their effect on the checks.
    first_learner = next((i for i, c in enumerate(executed.cells) if c.metadata.get(LEARNER)), len(executed.cells))
    causes, setup = [], []
    if report.get("died_in", len(executed.cells)) < first_learner:
        setup.append(f"{_label(executed.cells[report['died_in']])}: the kernel died")
    for index, text in report.get("errors", []):
        cell = executed.cells[index]
        timed_out = any(e[0] == index and e[1].startswith("TimeoutError") for e in report["errors"])
        if _role(cell) == "check" or (timed_out and text.startswith("KeyboardInterrupt")):
            continue  # a check's error is in its verdict; a KeyboardInterrupt is the time limit's own doing
        (setup if index < first_learner else causes).append(f"{_label(cell)}: {text}")
    effects = [f"{g}: {v['status']}: {v['message']}" for g, v in verdicts.items()
               if v["status"] not in ("passed", "not done", "not run")]
    stopped = [report["stopped"]] if report.get("stopped") else []
    if setup:  # nothing of the learner's had run yet: the grader's limits or environment are at fault
        return finish("not graded", ["an official set-up cell failed before any of the learner's code ran "
                                     f"({setup[0]}): check the grader's limits (--memory-mb) and environment"]
                      + stopped + notes)
    first = [n for n in notes if n == WRONG_ASSIGNMENT]  # the one note that explains all the others
    rest = [n for n in notes if n != WRONG_ASSIGNMENT]
    return finish("incomplete" if stopped else "graded", first + stopped + causes + effects + rest)


def by_hand_points(official) -> int:
    """Points of the written answers, which a teacher grades by hand (not in ``points``/``max_points``)."""
    return sum(int(_meta(c).get("points", 0)) for c in official.cells if _role(c) == "answer")


def _run_worker(tmp: Path, limits: Limits, threads: int) -> dict:
    """Run merged.ipynb in a worker process (which starts the kernel); a hard deadline backs the worker's own."""
    spec = tmp / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "diffusion-edu grader", "language": "python"}))
    work = tmp / "work"
    work.mkdir()
    env = {**os.environ, "JUPYTER_PATH": str(tmp), "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"),
           "IPYTHONDIR": str(tmp / "ipython"), "MPLBACKEND": "Agg",
           "DIFFUSION_EDU_GRADER": "1", "PYTHONWARNINGS": "ignore",
           "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           # On the CPU: checks are exact there, and RLIMIT_AS would break CUDA's address-space reservations.
           "CUDA_VISIBLE_DEVICES": ""}
    env.pop("DIFFUSION_EDU_STRICT", None)
    env.pop("DIFFUSION_EDU_FAST", None)
    if limits.fast:
        env["DIFFUSION_EDU_FAST"] = "1"
    command = [sys.executable, "-m", "diffusion_edu.grade", str(tmp), str(limits.cell_seconds),
               str(limits.notebook_seconds), str(limits.memory_mb)]
    stopped, log = None, tmp / "worker.log"
    with log.open("wb") as sink:  # a file, not a pipe: nothing a submission prints can fill our memory
        worker = subprocess.Popen(command, cwd=work, env=env, stdout=sink, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, start_new_session=True)
        _RUNNING[worker.pid] = tmp
        try:
            worker.wait(timeout=limits.notebook_seconds + 120)
        except subprocess.TimeoutExpired:
            _kill(worker.pid)
            worker.wait()
            stopped = f"the grader stopped this submission after {limits.notebook_seconds + 120:g} s"
        finally:
            _RUNNING.pop(worker.pid, None)
            _kill_kernel(tmp)  # a kernel that outlived its worker (the worker crashed, or was killed just now)
    report = tmp / "report.json"
    if stopped is None and worker.returncode == 0 and report.exists():
        return json.loads(report.read_text())
    # A worker that did not finish wrote nothing worth trusting (the kernel may have written those files).
    (tmp / "executed.ipynb").unlink(missing_ok=True)
    with log.open("rb") as handle:
        handle.seek(max(0, log.stat().st_size - 2000))
        tail = " ".join(handle.read().decode(errors="replace").strip().splitlines()[-3:])[-300:]
    if "MemoryError" in tail or "failed to map" in tail:
        tail += " (is --memory-mb too low for the course?)"
    return {"stopped": stopped or f"the grader's worker failed (exit {worker.returncode}): {tail}"}


_RUNNING: dict[int, Path] = {}  # worker pid → its folder, while it runs (for Ctrl-C)


def _stop_all_workers() -> None:
    for pid, tmp in list(_RUNNING.items()):
        _kill(pid)
        _kill_kernel(tmp)


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text())
    except (OSError, ValueError):
        return None


def _kill(pid: int | None) -> None:
    """SIGKILL a process group led by pid (workers and kernels each start their own session)."""
    if pid:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _kill_kernel(tmp: Path) -> None:
    """Kill the submission's kernel if it still runs: the pid its worker recorded, if that process is still
    the kernel started for ``tmp`` (its command line names the connection file under ``tmp``)."""
    pid = _read_pid(tmp / "kernel.pid")
    try:
        alive = pid and str(tmp) in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        alive = False
    if alive:
        _kill(pid)


def _peak_mb(pid: int | None) -> float | None:
    """The kernel's peak resident memory in MiB, or None where /proc cannot tell (not Linux, no kernel)."""
    try:
        return round(proc_memory_mib("VmHWM", pid), 1)
    except (OSError, RuntimeError, ValueError):
        return None


def _worker(tmp: str, cell_seconds: str, notebook_seconds: str, memory_mb: str) -> None:
    """In the worker process: cap memory (inherited by the kernel), run every code cell, write the report."""
    import resource

    limit = int(float(memory_mb) * 2**20)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError

    tmp, cell_s, total_s = Path(tmp), float(cell_seconds), float(notebook_seconds)
    nb = nbformat.read(tmp / "merged.ipynb", as_version=4)
    replies: dict[int, dict] = {}

    class Client(NotebookClient):
        """nbclient, keeping at most OUTPUT_CAP characters of each cell's output (check verdicts always)."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.sizes: dict[int, int] = {}  # characters of output so far, per cell

        def output(self, outs, msg, display_id, cell_index):
            content = msg.get("content", {})
            if RESULT_MIME in content.get("data", {}) or msg["msg_type"] == "error":
                return super().output(outs, msg, display_id, cell_index)
            size = len(content.get("text", "")) + sum(len(str(v)) for v in content.get("data", {}).values())
            before = self.sizes.get(cell_index, 0)
            self.sizes[cell_index] = before + size
            if before + size <= OUTPUT_CAP:
                return super().output(outs, msg, display_id, cell_index)
            if before < OUTPUT_CAP and msg["msg_type"] == "stream":  # keep the head of the stream
                head = {**msg, "content": {**content, "text": content["text"][:OUTPUT_CAP - before]}}
                super().output(outs, head, display_id, cell_index)
            if before <= OUTPUT_CAP:
                outs.append(nbformat.v4.new_output("stream", name="stderr",
                                                   text=f"\n[grader: output after {OUTPUT_CAP:,} characters dropped]\n"))
            return None

    client = Client(nb, kernel_name=KERNEL, timeout=int(cell_s), allow_errors=True, interrupt_on_timeout=True,
                    error_on_timeout={"ename": "TimeoutError", "evalue": "cell time limit"},
                    shutdown_kernel="immediate", resources={"metadata": {"path": os.getcwd()}},
                    on_cell_executed=lambda cell, cell_index, execute_reply: replies.__setitem__(
                        cell_index, execute_reply["content"]))
    report: dict = {"ran": [], "errors": [], "stopped": None, "peak_memory_mb": None}
    deadline, pid = time.monotonic() + total_s, None
    try:
        with client.setup_kernel(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL):
            pid = getattr(client.km.provisioner, "pid", None)
            (tmp / "kernel.pid").write_text(str(pid or ""))
            for index, cell in enumerate(nb.cells):
                if cell.cell_type != "code" or not cell.source.strip():
                    continue
                left = deadline - time.monotonic()
                if left < 1:
                    report["stopped"] = f"stopped at the notebook time limit ({total_s:g} s) before cell {index}"
                    break
                notebook_bound = left < cell_s  # this cell's timeout is what is left of the notebook's
                client.timeout = max(1, math.ceil(min(cell_s, left)))
                try:
                    client.execute_cell(cell, index)
                except DeadKernelError:
                    report["died_in"] = index
                    report["stopped"] = (f"the kernel died in cell {index} (os._exit, exit(), a crash or the memory "
                                         "limit); the cells after it did not run")
                    break
                report["ran"].append(index)
                reply = replies.get(index, {})
                if reply.get("ename") == "TimeoutError" and reply.get("evalue") == "cell time limit":
                    cell.outputs.append(nbformat.v4.new_output(
                        "error", ename="TimeoutError", evalue=f"cell stopped after {client.timeout} s", traceback=[]))
                    if notebook_bound:
                        report["stopped"] = f"stopped at the notebook time limit ({total_s:g} s) in cell {index}"
                        break
                for out in cell.outputs:
                    if out.get("output_type") == "error":
                        report["errors"].append([index, _one_line(out)])
            report["peak_memory_mb"] = _peak_mb(pid)
    except Exception as err:  # the kernel would not start, or nbclient failed: say so in the row
        report["stopped"] = report["stopped"] or f"grading failed: {type(err).__name__}: {str(err)[:200]}"
    finally:
        nbformat.write(nb, tmp / "executed.ipynb")
        (tmp / "report.json").write_text(json.dumps(report))


# ----------------------------------------------------------------------------------------------------- the class
def submissions(paths: list[str | Path], exclude: list[str | Path] = ()) -> list[Path]:
    """Files named, and every file inside folders named (hidden files and checkpoints skipped), sorted, each
    once; ``exclude``: files and folders to leave out (the grades CSV, the feedback folder)."""
    found: dict[Path, Path] = {}
    skip = [Path(e).resolve() for e in exclude]
    for p in map(Path, paths):
        if p.is_dir():
            files = [f for f in sorted(p.rglob("*")) if f.is_file()
                     and not any(part.startswith(".") for part in f.relative_to(p).parts)]
        elif p.is_file():
            files = [p]
        else:
            raise FileNotFoundError(f"submission {str(p)!r} does not exist")
        for f in files:
            key = f.resolve()
            if not any(key == s or s in key.parents for s in skip):
                found.setdefault(key, f)
    return sorted(found.values())


def grade(paths: list[str | Path], assignment: str, out: str | Path, *, jobs: int = 1, limits: Limits = Limits(),
          exercises: str | Path | None = None, feedback: str | Path | None = None, progress: bool = True) -> list[dict]:
    """Grade every submission into the CSV ``out``; returns the rows.

    Each row is written and flushed as its submission finishes, so an interrupted run keeps what it graded;
    at the end the file is rewritten sorted by file. With ``feedback``, each executed notebook is written
    there too, under its path relative to the submissions (a folder outside the submissions)."""
    from tqdm.auto import tqdm

    if not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be a positive integer, got {jobs!r}")
    official = official_notebook(assignment, exercises)
    if feedback is not None:
        inside = [p for p in map(Path, paths) if p.is_dir()
                  and (Path(feedback).resolve() == p.resolve() or p.resolve() in Path(feedback).resolve().parents)]
        if inside:
            raise ValueError(f"--feedback {str(feedback)!r} is inside the submissions folder {str(inside[0])!r}: "
                             "it would overwrite or mix with the submissions; choose a folder outside it")
    files = submissions(paths, exclude=[out] + ([feedback] if feedback is not None else []))
    if not files:
        raise ValueError("no submissions: pass notebook files or folders that contain them")
    nb = nbformat.read(official, as_version=4)
    fields = (["file", "status"] + [g for g, _ in checks_of(nb)] + answers_of(nb)
              + ["points", "max_points", "by_hand_max_points", "seconds", "peak_memory_mb", "notes"])
    base = Path(os.path.commonpath([f.resolve().parent for f in files]))
    rows, threads = [], max(1, (os.cpu_count() or 1) // jobs)  # jobs × threads ≤ cores: no oversubscription
    pool = ThreadPoolExecutor(jobs)
    with open(out, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        handle.flush()
        futures = {pool.submit(grade_one, f, official, limits,
                               None if feedback is None else Path(feedback) / f.resolve().relative_to(base),
                               threads): f for f in files}
        bar = tqdm(total=len(files), desc=f"grading {official.stem}", unit="notebook", disable=not progress)
        try:
            for future in as_completed(futures):
                try:
                    row = future.result()
                except Exception as err:  # a bug of ours must not cost the other rows
                    row = {"file": str(futures[future]), "status": "not graded",
                           "notes": f"grader error: {type(err).__name__}: {err}"}
                writer.writerow(row)
                handle.flush()
                os.fsync(handle.fileno())
                rows.append(row)
                bar.set_postfix_str(f"{Path(row['file']).name}: {row.get('points', 0)}/{row.get('max_points', '?')}")
                bar.update()
        except BaseException:  # Ctrl-C (or a crash): stop now, keep the rows written so far
            pool.shutdown(wait=False, cancel_futures=True)
            _stop_all_workers()
            bar.close()
            print(f"grading stopped after {len(rows)} of {len(files)} submissions; {out} holds their rows",
                  file=sys.stderr)
            raise
        bar.close()
    pool.shutdown()
    rows.sort(key=lambda r: r["file"])
    partial = Path(f"{out}.partial")
    with open(partial, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(partial, out)
    return rows


if __name__ == "__main__":  # the worker: python -m diffusion_edu.grade TMP CELL_S NOTEBOOK_S MEMORY_MB
    _worker(*sys.argv[1:5])
