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
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import nbformat

from .merge import (LEARNER, WRONG_ASSIGNMENT, answer_text, answers_of, checks_of, label, merge,  # noqa: F401
                    nbgrader_meta, official_notebook, role, score)
from .worker import OUTPUT_CAP, Limits, run_worker, stop_all_workers  # noqa: F401  (OUTPUT_CAP: re-exported)

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
    handed_out = {nbgrader_meta(c)["grade_id"]: c for c in official.cells if role(c) == "answer"}
    for cell in merged.cells:
        if role(cell) == "answer":
            row[nbgrader_meta(cell)["grade_id"]] = answer_text(cell, handed_out[nbgrader_meta(cell)["grade_id"]])
    with tempfile.TemporaryDirectory(prefix="diffusion-edu-grade-") as tmp:
        tmp = Path(tmp)
        nbformat.write(merged, tmp / "merged.ipynb")
        report = run_worker(tmp, limits, threads)
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
        setup.append(f"{label(executed.cells[report['died_in']])}: the kernel died")
    for index, text in report.get("errors", []):
        cell = executed.cells[index]
        timed_out = any(e[0] == index and e[1].startswith("TimeoutError") for e in report["errors"])
        if role(cell) == "check" or (timed_out and text.startswith("KeyboardInterrupt")):
            continue  # a check's error is in its verdict; a KeyboardInterrupt is the time limit's own doing
        (setup if index < first_learner else causes).append(f"{label(cell)}: {text}")
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
    return sum(int(nbgrader_meta(c).get("points", 0)) for c in official.cells if role(c) == "answer")


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
            stop_all_workers()
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


