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

import csv
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from .authoring import MARKDOWN_STUB, ROOT
from .authoring import ROLE as STAMP
from .checks import RESULT_MIME, STATUSES

KERNEL = "diffusion-edu-grader"  # a kernelspec written per run, pointing at this very interpreter
OUTPUT_CAP = 1_000_000  # characters of output kept per cell: a print loop must not fill the worker's memory
SUSPICIOUS = re.compile(r"\bchecks\s*(=|\.\s*(RESULTS|checker|Result|CheckFailed)\b)|\bRESULTS\b|vnd\.diffusion-edu"
                        r"|DIFFUSION_EDU_(GRADER|STRICT)|diffusion_edu\.checks|sys\.modules")


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
def merge(official, submitted):
    """The notebook to run: the official cells in official order, with the learner's task cells and added
    cells. Returns (notebook, notes); notes say which official cells were missing and which cells look at
    the checks machinery."""
    import copy

    import nbformat

    by_grade_id = {_meta(c)["grade_id"]: c for c in official.cells if _meta(c).get("grade_id")}
    learner: dict[str, object] = {}  # grade_id → the learner's task cell
    added: dict[str | None, list] = {}  # official cell id it follows → cells the learner added
    anchor, seen, notes = None, set(), []
    for cell in submitted.cells:
        grade_id = _meta(cell).get("grade_id")
        twin = by_grade_id.get(grade_id) if grade_id else None
        if twin is None:  # an untagged official cell: same id (JupyterLab keeps ids) or, failing that, same text
            twin = next((c for c in official.cells if c.get("id") == cell.get("id") and c.cell_type == cell.cell_type
                         and not _role(c)), None) or next((c for c in official.cells if c.get("id") not in seen
                                                           and c.cell_type == cell.cell_type and not _role(c)
                                                           and c.source.strip() == cell.source.strip()), None)
        stamp = cell.get("metadata", {}).get(STAMP)
        if twin is None and stamp:  # the badge or set-up cell, whatever its link says
            twin = next((c for c in official.cells if c.get("metadata", {}).get(STAMP) == stamp), None)
        if twin is None:
            added.setdefault(anchor, []).append(cell)
            continue
        anchor = twin.get("id")
        seen.add(anchor)
        if _role(twin) in ("task", "answer") and _meta(cell).get("grade_id") == _meta(twin)["grade_id"]:
            learner.setdefault(_meta(twin)["grade_id"], cell)

    used = {c.get("id") for c in official.cells}

    def theirs(anchor_id):  # the learner's cells added after an official cell; each keeps or gets a unique id
        out = []
        for cell in map(copy.deepcopy, added.get(anchor_id, [])):
            if not cell.get("id") or cell["id"] in used:
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
        cells.append(own)
        cells += theirs(cell.get("id"))
    for cell in cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None

    missing = [_meta(c).get("grade_id") or c.get("id") for c in official.cells
               if c.get("id") not in seen and (_role(c) or c.cell_type == "code")]
    if missing:
        notes.append(f"restored {len(missing)} official cell(s) the submission lacked or changed the id of: "
                     + ", ".join(map(str, missing[:6])) + (" …" if len(missing) > 6 else ""))
    absent = [g for g, c in by_grade_id.items() if _role(c) in ("task", "answer") and g not in learner]
    if absent and len(absent) == sum(_role(c) in ("task", "answer") for c in by_grade_id.values()):
        notes.append("none of the assignment's task cells were found: is this the right assignment?")
    mine = [c for c in learner.values() if c.cell_type == "code"] + [c for v in added.values() for c in v
                                                                     if c.cell_type == "code"]
    flagged = sorted({m.group(0) for c in mine for m in SUSPICIOUS.finditer(c.source)})
    if flagged:
        notes.append("review by hand: the learner's code touches the checks machinery (" + ", ".join(flagged) + ")")
    return nbformat.from_dict({**official, "cells": cells}), notes


# ----------------------------------------------------------------------------------------------------- score
def score(executed, ran: set[int]) -> dict[str, dict]:
    """Each check's verdict from its own cell's outputs: {grade_id: {"status", "message"}}."""
    verdicts = {}
    for index, cell in enumerate(executed.cells):
        if _role(cell) != "check":
            continue
        grade_id = _meta(cell)["grade_id"]
        if index not in ran:
            verdicts[grade_id] = {"status": "not run", "message": "this check cell did not run"}
            continue
        bundles = [o["data"][RESULT_MIME] for o in cell.get("outputs", [])
                   if o.get("output_type") == "display_data" and RESULT_MIME in o.get("data", {})]
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        if errors:  # the check cell itself raised (SystemExit, a NameError for an undefined function, a timeout…)
            verdicts[grade_id] = {"status": "error", "message": _one_line(errors[-1])}
        elif bundles and bundles[-1].get("status") in STATUSES:
            verdicts[grade_id] = {"status": bundles[-1]["status"], "message": str(bundles[-1].get("message", ""))}
        else:
            verdicts[grade_id] = {"status": "error", "message": "the check reported no result"}
    return verdicts


def _one_line(error: dict) -> str:
    text = f"{error.get('ename', 'Error')}: {error.get('evalue', '')}".strip().rstrip(":")
    return text if len(text) <= 160 else text[:157] + "…"


def _answer(cell, handed_out) -> str:
    """'answered' unless the written answer is still as handed out (question + stub), the stub, or empty."""
    text = cell.source.strip()
    return "blank" if text in ("", MARKDOWN_STUB, handed_out.source.strip()) else "answered"


# ----------------------------------------------------------------------------------------------------- one submission
def grade_one(path: str | Path, official_path: str | Path, limits: Limits = Limits(),
              feedback: str | Path | None = None, threads: int = 1) -> dict:
    """Grade one submission; returns its CSV row (a dict). Never raises for a bad submission. ``feedback``:
    where to write the executed notebook, if anywhere."""
    import nbformat

    path, start = Path(path), time.monotonic()
    official = nbformat.read(official_path, as_version=4)
    checks, answers = checks_of(official), answers_of(official)
    row = {"file": str(path), "status": "", **{g: "not run" for g, _ in checks}, **{a: "" for a in answers},
           "points": 0, "max_points": sum(p for _, p in checks), "seconds": 0.0, "peak_memory_mb": "", "notes": ""}

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
    ran = set(report.get("ran", []))
    for grade_id, verdict in score(executed, ran).items():
        row[grade_id] = verdict["status"]
        if verdict["status"] not in ("passed", "not done", "not run"):
            notes.append(f"{grade_id}: {verdict['status']}: {verdict['message']}")
    row["points"] = sum(p for g, p in checks if row[g] == "passed")
    row["peak_memory_mb"] = report.get("peak_memory_mb") or ""
    for index, text in report.get("errors", []):  # errors outside the check cells (those are in the verdicts)
        cell = executed.cells[index]
        if _role(cell) != "check":
            notes.append(f"task {_meta(cell)['grade_id']}: {text}" if _role(cell) else f"cell {index}: {text}")
    status = "incomplete" if report.get("stopped") else "graded"
    return finish(status, ([report["stopped"]] if report.get("stopped") else []) + notes)


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
           "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
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
        try:
            worker.wait(timeout=limits.notebook_seconds + 120)
        except subprocess.TimeoutExpired:
            _kill(worker.pid)
            worker.wait()
            stopped = f"the grader stopped this submission after {limits.notebook_seconds + 120:g} s"
        finally:
            _kill_kernel(tmp)  # a kernel that outlived its worker (the worker crashed, or was killed just now)
    report = tmp / "report.json"
    if stopped is None and worker.returncode == 0 and report.exists():
        return json.loads(report.read_text())
    # A worker that did not finish wrote nothing worth trusting (the kernel may have written those files).
    (tmp / "executed.ipynb").unlink(missing_ok=True)
    with log.open("rb") as handle:
        handle.seek(max(0, log.stat().st_size - 2000))
        tail = " ".join(handle.read().decode(errors="replace").strip().splitlines()[-3:])[-300:]
    return {"stopped": stopped or f"the grader's worker failed (exit {worker.returncode}): {tail}"}


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
    try:
        line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("VmHWM:"))
        return round(int(line.split()[1]) / 1024, 1)
    except (OSError, StopIteration, ValueError):
        return None


def _worker(tmp: str, cell_seconds: str, notebook_seconds: str, memory_mb: str) -> None:
    """In the worker process: cap memory (inherited by the kernel), run every code cell, write the report."""
    import resource

    limit = int(float(memory_mb) * 2**20)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    import nbformat
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
                client.timeout = max(1, int(min(cell_s, left)))
                try:
                    client.execute_cell(cell, index)
                except DeadKernelError:
                    report["stopped"] = (f"the kernel died in cell {index} (os._exit, exit(), a crash or the memory "
                                         "limit); the cells after it did not run")
                    break
                report["ran"].append(index)
                reply = replies.get(index, {})
                if reply.get("ename") == "TimeoutError" and reply.get("evalue") == "cell time limit":
                    cell.outputs.append(nbformat.v4.new_output(
                        "error", ename="TimeoutError", evalue=f"cell stopped after {client.timeout} s", traceback=[]))
                    if client.timeout < cell_s:
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
def submissions(paths: list[str | Path]) -> list[Path]:
    """Files named, and every file inside folders named (hidden files and checkpoints skipped), sorted."""
    found = []
    for p in map(Path, paths):
        if p.is_dir():
            found += [f for f in sorted(p.rglob("*")) if f.is_file() and not any(
                part.startswith(".") for part in f.relative_to(p).parts)]
        elif p.is_file():
            found.append(p)
        else:
            raise FileNotFoundError(f"submission {str(p)!r} does not exist")
    return found


def grade(paths: list[str | Path], assignment: str, out: str | Path, *, jobs: int = 1, limits: Limits = Limits(),
          exercises: str | Path | None = None, feedback: str | Path | None = None, progress: bool = True) -> list[dict]:
    """Grade every submission into the CSV ``out``, a row written as each finishes; returns the rows. With
    ``feedback``, each executed notebook is written there too, under its path relative to the submissions."""
    from tqdm.auto import tqdm

    if not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be a positive integer, got {jobs!r}")
    official = official_notebook(assignment, exercises)
    files = submissions(paths)
    if not files:
        raise ValueError("no submissions: pass notebook files or folders that contain them")
    import nbformat

    nb = nbformat.read(official, as_version=4)
    fields = (["file", "status"] + [g for g, _ in checks_of(nb)] + answers_of(nb)
              + ["points", "max_points", "seconds", "peak_memory_mb", "notes"])
    rows, threads = [], max(1, (os.cpu_count() or 1) // jobs)  # jobs × threads ≤ cores: no oversubscription
    with open(out, "w", newline="", encoding="utf-8") as handle, ThreadPoolExecutor(jobs) as pool:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        handle.flush()
        base = Path(os.path.commonpath([f.resolve().parent for f in files]))
        futures = {pool.submit(grade_one, f, official, limits, feedback and Path(feedback) / f.resolve().relative_to(base),
                               threads): f for f in files}
        bar = tqdm(total=len(files), desc=f"grading {official.stem}", unit="notebook", disable=not progress)
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
        bar.close()
    return rows


if __name__ == "__main__":  # the worker: python -m diffusion_edu.grade TMP CELL_S NOTEBOOK_S MEMORY_MB
    _worker(*sys.argv[1:5])
