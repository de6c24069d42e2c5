"""The classroom grader (`diffusion-edu grade`): honest scores, official checks restored, unforgeable verdicts,
and a row that says what happened for every broken or hostile submission. Chapter 01 is the assignment: its
solution notebook is the perfect submission and every hostile one is a copy of it with one thing changed."""
import csv
import json
import math
import os
import subprocess
import warnings
from pathlib import Path

import nbformat
import pytest

from diffusion_edu import checks
from diffusion_edu.course import grade
from diffusion_edu.course.cli import main

ROOT = Path(__file__).resolve().parents[1]
SOLUTION = json.loads((ROOT / "solutions" / "01_forward_process.ipynb").read_text())
OFFICIAL = ROOT / "exercises" / "01_forward_process.ipynb"
CHECKS = ["check_alpha_bars_from_betas", "check_forward_step", "check_q_sample", "check_cosine_alpha_bars",
          "check_snr"]
POINTS = dict(grade.checks_of(nbformat.read(OFFICIAL, as_version=4)))  # from the nbgrader metadata


@pytest.fixture(scope="module")
def probe_seconds(tmp_path_factory) -> float:
    """Seconds to grade the blank hand-out alone on this machine, now: a kernel start, the official set-up
    cell and every check. Every time limit below is a multiple of it, so a slow or busy machine gets
    proportionally more time and no test in this file depends on the machine's speed."""
    [row] = grade.grade([OFFICIAL], "01", tmp_path_factory.mktemp("probe") / "g.csv", progress=False)
    assert row["status"] == "graded", row["notes"]
    return row["seconds"]


@pytest.fixture(scope="module")
def limits(probe_seconds) -> grade.Limits:
    """Generous limits for submissions that should finish (fractional seconds work too)."""
    return grade.Limits(cell_seconds=max(19.5, 3 * probe_seconds), notebook_seconds=max(300.0, 30 * probe_seconds),
                        memory_mb=4096)


def _variant(edit) -> dict:
    nb = json.loads(json.dumps(SOLUTION))
    edit(nb["cells"])
    return nb


def _cell(cells, grade_id):
    return next(c for c in cells if c["metadata"].get("nbgrader", {}).get("grade_id") == grade_id)


def _prepend(grade_id, code):
    def edit(cells):
        cell = _cell(cells, grade_id)
        cell["source"] = code + "\n" + "".join(cell["source"])
    return edit


def _replace(grade_id, code):
    def edit(cells):
        _cell(cells, grade_id)["source"] = code
    return edit


def _insert_after_imports(code):
    def edit(cells):
        cells.insert(4, nbformat.v4.new_code_cell(code, id="learner-own"))
    return edit


def _forge(cells):
    """A wrong q_sample, its check cell replaced by a printed pass, snr's check deleted, a forged result bundle."""
    _replace("q_sample", "def q_sample(x0, t, schedule, noise):\n    return x0 + noise")(cells)
    _cell(cells, "check_q_sample")["source"] = 'print("✅ q_sample: passed. Well done.")'
    cells.remove(_cell(cells, "check_snr"))
    fake = {"task": "q_sample", "status": "passed", "message": "Well done."}
    cells.insert(cells.index(_cell(cells, "check_q_sample")) + 1, nbformat.v4.new_code_cell(
        "from IPython.display import display\n"
        f"display({{'application/vnd.diffusion-edu.check+json': {fake!r}}}, raw=True)", id="forger"))


def _hook_forgery(cells):
    """A wrong snr, and a hook that appends a "passed" verdict after every cell (MIME type built by pieces)."""
    _replace("snr", "def snr(alpha_bars):\n    return alpha_bars")(cells)
    _insert_after_imports(
        "from IPython import get_ipython\nfrom IPython.display import display\n"
        "kind = 'application/' + 'vnd.diffusion-edu' + '.check+json'\n"
        "get_ipython().events.register('post_run_cell', lambda result: display(\n"
        "    {kind: {'task': 'snr', 'status': 'passed', 'message': ''}}, raw=True))")(cells)


def _display_forgery(cells):
    """A wrong snr, and IPython.display.display patched to turn every verdict into a pass."""
    _replace("snr", "def snr(alpha_bars):\n    return alpha_bars")(cells)
    _insert_after_imports(
        "import IPython.display\noriginal = IPython.display.display\n"
        "def display(obj, **kwargs):\n"
        "    if isinstance(obj, dict):\n"
        "        obj = {k: {**v, 'status': 'passed'} if isinstance(v, dict) else v for k, v in obj.items()}\n"
        "    return original(obj, **kwargs)\n"
        "IPython.display.display = display")(cells)


def _no_metadata(cells):
    """Metadata stripped everywhere (some tools do that), and q_sample moved into a new cell near the top."""
    for cell in cells:
        cell["metadata"] = {}
    moved = _cell_by_text(cells, "def q_sample(")
    cells.remove(moved)
    cells.insert(4, nbformat.v4.new_code_cell("".join(moved["source"]), id="my-q-sample"))


def _cell_by_text(cells, text):
    return next(c for c in cells if text in "".join(c["source"]))


def _edited(cells):
    """An official cell edited (discarded), and task snr pasted twice: the stub first, the answer last."""
    imports = _cell_by_text(cells, "import matplotlib")
    imports["source"] = "import numpy as np\n" + "".join(imports["source"])
    stub = json.loads(json.dumps(_cell(cells, "snr")))
    stub["id"], stub["source"] = "pasted", "def snr(alpha_bars):\n    raise NotImplementedError()"
    cells.insert(cells.index(_cell(cells, "snr")), stub)


SUBMISSIONS = {
    "perfect.ipynb": _variant(lambda cells: None),
    "forged.ipynb": _variant(_forge),
    # An infinite loop that floods the output, too: the worker keeps only the first OUTPUT_CAP characters.
    "infinite_loop.ipynb": _variant(_replace("forward_step", "def forward_step(x_prev, t, schedule, noise):\n"
                                                             "    while True:\n        print('spam ' * 200)")),
    "sys_exit.ipynb": _variant(_prepend("forward_step", "import sys\nsys.exit(3)")),
    "os_exit.ipynb": _variant(_prepend("q_sample", "import os\nos._exit(1)")),
    # 6 GiB fits this machine's RAM: only the grader's memory limit (4 GiB) makes it fail, and fail at once.
    "huge_allocation.ipynb": _variant(_insert_after_imports("hoard = bytearray(6 * 2**30)")),
    "import_error.ipynb": _variant(_insert_after_imports("import a_module_that_does_not_exist")),
    "hook_forgery.ipynb": _variant(_hook_forgery),
    "display_forgery.ipynb": _variant(_display_forgery),
    "no_metadata.ipynb": _variant(_no_metadata),
    "edited.ipynb": _variant(_edited),
    "wrong_assignment.ipynb": json.loads((ROOT / "solutions" / "02_denoising_2d.ipynb").read_text()),
}


@pytest.fixture(scope="module")
def graded(tmp_path_factory, limits):
    folder = tmp_path_factory.mktemp("submissions")
    for name, nb in SUBMISSIONS.items():
        (folder / name).write_text(json.dumps(nb))
    (folder / "blank.ipynb").write_text(OFFICIAL.read_text())
    (folder / "invalid_json.ipynb").write_text(OFFICIAL.read_text()[:500])
    (folder / "not_a_notebook.ipynb").write_text(json.dumps({"answer": 42}))
    (folder / "essay.pdf").write_bytes(b"%PDF-1.4 \x00\xff not a notebook")
    (folder / ".ipynb_checkpoints").mkdir()
    (folder / ".ipynb_checkpoints" / "perfect-checkpoint.ipynb").write_text("{}")  # skipped, like hidden files
    out = tmp_path_factory.mktemp("grades") / "grades.csv"
    feedback = tmp_path_factory.mktemp("feedback")
    rows = grade.grade([folder], "01", out, jobs=2, limits=limits, progress=False, feedback=feedback)
    executed = nbformat.read(feedback / "perfect.ipynb", as_version=4)  # the learner's copy, with the verdicts
    assert "✅ q_sample: passed" in json.dumps(executed.cells[14].outputs, ensure_ascii=False)
    with open(out, newline="") as handle:
        on_disk = {Path(r["file"]).name: r for r in csv.DictReader(handle)}
    looped = (feedback / "infinite_loop.ipynb").read_text()
    assert "output after 1,000,000 characters dropped" in looped and len(looped) < 2 * grade.OUTPUT_CAP
    return {Path(r["file"]).name: r for r in rows}, on_disk


def test_forging_through_ipython_gains_nothing_and_is_flagged(graded):
    for name in ("hook_forgery.ipynb", "display_forgery.ipynb"):
        row = graded[0][name]
        assert row["check_snr"] in ("failed", "error"), (name, row["notes"])
        assert row["points"] < 10 and "review by hand" in row["notes"], (name, row["notes"])


def test_metadata_stripped_and_tasks_moved_still_count(graded):
    row = graded[0]["no_metadata.ipynb"]
    assert row["points"] == 10 and row["status"] == "graded", row["notes"]


def test_edits_to_official_cells_are_discarded_and_said(graded):
    row = graded[0]["edited.ipynb"]
    assert row["points"] == 10, row["notes"]
    assert "discarded the learner's edits to 1 official code cell" in row["notes"]
    assert "2 cells hold task snr: the last one was graded" in row["notes"]


def test_another_assignment_gets_a_row_that_says_so(graded):
    row = graded[0]["wrong_assignment.ipynb"]
    assert row["points"] == 0 and row["notes"].startswith(grade.WRONG_ASSIGNMENT)


def test_every_submission_gets_one_row_in_the_csv(graded):
    rows, on_disk = graded
    assert sorted(on_disk) == sorted(rows) == sorted([*SUBMISSIONS, "blank.ipynb", "invalid_json.ipynb",
                                                      "not_a_notebook.ipynb", "essay.pdf"])
    assert all(str(rows[name]["points"]) == on_disk[name]["points"] for name in rows)


def test_the_solution_scores_full_points_and_the_hand_out_none(graded):
    rows, _ = graded
    perfect, blank = rows["perfect.ipynb"], rows["blank.ipynb"]
    assert perfect["status"] == "graded" and all(perfect[c] == "passed" for c in CHECKS)
    assert perfect["points"] == perfect["max_points"] == sum(POINTS.values()) == 10
    assert perfect["why_cumprod"] == "answered" and perfect["notes"] == ""
    assert perfect["by_hand_max_points"] == 2  # the written answer's points, graded by hand
    assert blank["status"] == "graded" and all(blank[c] == "not done" for c in CHECKS)
    assert blank["points"] == 0 and blank["why_cumprod"] == "blank"


def test_edited_deleted_and_forged_checks_gain_nothing(graded):
    row = graded[0]["forged.ipynb"]
    assert row["check_q_sample"] == "failed", "the official check cell must be put back and must fail"
    assert row["check_snr"] == "passed", "a deleted check cell is put back and runs"
    assert row["points"] == 10 - POINTS["check_q_sample"]
    assert "check_q_sample: failed" in row["notes"]
    assert "restored" in row["notes"] and "review by hand" in row["notes"]


def test_an_infinite_loop_is_stopped_and_the_other_tasks_still_count(graded, limits):
    row = graded[0]["infinite_loop.ipynb"]
    assert row["check_forward_step"] == "error" and "TimeoutError" in row["notes"]
    assert f"cell stopped after {math.ceil(limits.cell_seconds)} s" in row["notes"], "the cell limit stopped it"
    assert all(row[c] == "passed" for c in CHECKS if c != "check_forward_step")
    assert row["status"] == "graded" and row["points"] == 10 - POINTS["check_forward_step"]


def test_sys_exit_is_reported_and_grading_goes_on(graded):
    row = graded[0]["sys_exit.ipynb"]
    assert "SystemExit" in row["notes"] and row["check_forward_step"] == "error"
    assert row["check_q_sample"] == row["check_snr"] == "passed"


def test_os_exit_kills_only_its_own_kernel(graded):
    row = graded[0]["os_exit.ipynb"]
    assert row["status"] == "incomplete" and "kernel died" in row["notes"]
    assert row["check_alpha_bars_from_betas"] == row["check_forward_step"] == "passed"
    assert row["check_q_sample"] == row["check_snr"] == "not run"
    assert row["points"] == POINTS["check_alpha_bars_from_betas"] + POINTS["check_forward_step"]


def test_a_huge_allocation_hits_the_memory_limit(graded, limits):
    row = graded[0]["huge_allocation.ipynb"]
    assert "MemoryError" in row["notes"] and row["points"] == 10
    assert 0 < float(row["peak_memory_mb"]) < limits.memory_mb


def test_an_exception_at_import_is_reported(graded):
    row = graded[0]["import_error.ipynb"]
    assert "ModuleNotFoundError" in row["notes"] and "a_module_that_does_not_exist" in row["notes"]
    assert row["points"] == 10, "the learner's own broken cell does not stop the official ones"


@pytest.mark.parametrize("name, status, words", [
    ("invalid_json.ipynb", "unreadable", "invalid JSON at line"),
    ("not_a_notebook.ipynb", "unreadable", "not a Jupyter notebook"),
    ("essay.pdf", "not a notebook", "expected a Jupyter notebook (.ipynb)"),
])
def test_files_that_are_not_notebooks_get_a_row_that_says_so(graded, name, status, words):
    row = graded[0][name]
    assert row["status"] == status and words in row["notes"] and row["points"] == 0


# Forge the worker's files (every check passed), then kill the worker before it can overwrite them.
FORGE_THEN_KILL_THE_WORKER = """
import json, os, signal
nb, ran = json.load(open("../merged.ipynb")), []
for i, cell in enumerate(nb["cells"]):
    meta = cell["metadata"].get("nbgrader", {})
    if meta.get("grade") and not meta.get("solution"):
        verdict = {"task": meta["grade_id"], "status": "passed", "message": ""}
        cell["outputs"] = [{"output_type": "display_data", "metadata": {},
                            "data": {"application/vnd.diffusion-edu.check+json": verdict}}]
        ran.append(i)
json.dump(nb, open("../executed.ipynb", "w"))
json.dump({"ran": ran, "errors": [], "stopped": None, "peak_memory_mb": 1}, open("../report.json", "w"))
os.kill(os.getppid(), signal.SIGKILL)
"""


def test_stubborn_kernels_and_killed_workers_leave_nothing_behind(tmp_path, probe_seconds):
    """`signal(SIGINT, SIG_IGN)` then a loop: interrupting fails, so the notebook limit ends it. A kernel that
    forges the worker's result files and kills its worker (the grader's process that drives it) gains
    nothing, gets a row, and is killed. No kernel outlives the grader.

    The limits are tight on purpose (the notebook limit ends the loop), yet leave the cells before the loop
    time to run on any machine: each official cell gets twice the probe's whole notebook, and the notebook
    four times it (two submissions grade side by side) plus 10 s."""
    nb = _variant(_prepend("q_sample", "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                                       "while True:\n    pass"))
    (tmp_path / "stubborn.ipynb").write_text(json.dumps(nb))
    nb = _variant(_prepend("q_sample", FORGE_THEN_KILL_THE_WORKER))
    (tmp_path / "patricide.ipynb").write_text(json.dumps(nb))
    limits = grade.Limits(cell_seconds=max(4.0, 2 * probe_seconds), notebook_seconds=round(4 * probe_seconds + 10))
    rows = grade.grade([tmp_path], "01", tmp_path / "g.csv", jobs=2, limits=limits, progress=False)
    row, killer = sorted(rows, key=lambda r: "patricide" in r["file"])
    assert killer["status"] == "not graded" and "worker failed" in killer["notes"] and killer["points"] == 0
    assert row["status"] == "incomplete", row["notes"]
    assert f"notebook time limit ({limits.notebook_seconds:g} s)" in row["notes"], "the worker's own limit, not the hard one"
    assert row["check_alpha_bars_from_betas"] == "passed" and row["check_snr"] in ("not run", "error")
    leftovers = subprocess.run(["pgrep", "-f", "diffusion-edu-grade-"], capture_output=True, text=True).stdout
    assert leftovers.strip() == "", f"processes left behind: {leftovers}"


def test_rows_are_on_disk_as_soon_as_each_submission_is_graded(tmp_path, monkeypatch):
    """A crash halfway loses nothing: the rows written before it are in the file."""
    for name in ("a.ipynb", "b.ipynb", "c.ipynb"):
        (tmp_path / name).write_text("{}")

    def fake(path, *args):
        if Path(path).name == "c.ipynb":
            raise KeyboardInterrupt  # the teacher's laptop dies here
        return {"file": str(path), "status": "graded", "points": 1}

    monkeypatch.setattr(grade, "grade_one", fake)
    out = tmp_path / "grades.csv"
    with pytest.raises(KeyboardInterrupt):
        grade.grade(sorted(tmp_path.glob("*.ipynb")), "01", out, progress=False)
    names = [Path(r["file"]).name for r in csv.DictReader(out.open())]
    assert names == ["a.ipynb", "b.ipynb"]


# ------------------------------------------------------------------------------------------- merge, without kernels
def test_merge_keeps_task_cells_and_added_cells_and_restores_the_rest():
    official = nbformat.read(OFFICIAL, as_version=4)
    learner = nbformat.reads(json.dumps(_variant(lambda cells: None)), as_version=4)
    learner.cells[3].source = "SEED = 123  # an edited official cell"
    learner.cells.insert(6, nbformat.v4.new_code_cell("helper = 1", id="mine"))
    del learner.cells[learner.cells.index(next(c for c in learner.cells if c.get("id") == "cell-11"))]  # a check
    merged, notes = grade.merge(official, learner)
    ids = [c.get("id") for c in merged.cells]
    assert ids == [c.get("id") for c in official.cells[:6]] + ["mine"] + [c.get("id") for c in official.cells[6:]]
    assert merged.cells[3].source == official.cells[3].source
    assert "### BEGIN SOLUTION" in merged.cells[5].source  # the learner's task cell
    assert merged.cells[12].source == official.cells[11].source  # the deleted check, back in its place
    assert any("restored" in n and "check_forward_step" in n for n in notes)


def test_merge_matches_untagged_cells_by_text_when_ids_are_lost():
    """Some front ends drop cell ids: an official cell is still recognised by its text, not duplicated."""
    official = nbformat.read(OFFICIAL, as_version=4)
    learner = nbformat.reads(json.dumps(_variant(lambda cells: None)), as_version=4)
    for cell in learner.cells:
        cell["id"] = "x" + cell["id"]
    merged, _ = grade.merge(official, learner)
    assert len(merged.cells) == len(official.cells)

    older = _variant(lambda cells: cells.insert(5, nbformat.v4.new_code_cell("helper = 42")))
    older["nbformat_minor"] = 4  # before cell ids existed, as some front ends still save
    for cell in older["cells"]:
        cell.pop("id", None)
    merged, _ = grade.merge(official, nbformat.reads(json.dumps(older), as_version=4))
    assert [c.source for c in merged.cells].count("helper = 42") == 1
    assert len(merged.cells) == len(official.cells) + 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a cell without an id is a warning today, an error tomorrow
        nbformat.validate(merged)


# ------------------------------------------------------------------------------------------- settings and errors
def test_bad_arguments_get_clear_errors(tmp_path, capsys):
    with pytest.raises(ValueError, match="cell_seconds must be positive"):
        grade.Limits(cell_seconds=0)
    with pytest.raises(ValueError, match="jobs must be a positive integer"):
        grade.grade([OFFICIAL], "01", tmp_path / "g.csv", jobs=0)
    with pytest.raises(ValueError, match=r"--assignment '99' should name one hand-out .*01, 02"):  # no chapter 99
        grade.official_notebook("99")
    with pytest.raises(FileNotFoundError, match="submission .* does not exist"):
        grade.submissions([tmp_path / "nowhere"])
    with pytest.raises(SystemExit):
        main(["grade", str(OFFICIAL), "--assignment", "42", "--out", str(tmp_path / "g.csv")])
    assert "--assignment '42'" in capsys.readouterr().err
    assert grade.official_notebook("1") == grade.official_notebook("01_forward_process") == OFFICIAL


def test_strict_mode_makes_a_failed_check_raise_for_nbgraders_autograder(monkeypatch):
    def snr(alpha_bars):
        return alpha_bars  # wrong: ᾱ, not ᾱ / (1 − ᾱ)

    monkeypatch.delenv("DIFFUSION_EDU_STRICT", raising=False)
    assert checks.check_snr(snr).status == "failed"  # a learner's notebook just prints the verdict
    monkeypatch.setenv("DIFFUSION_EDU_STRICT", "1")
    with pytest.raises(checks.CheckFailed, match="snr: failed"):
        checks.check_snr(snr)
    assert checks.check_snr(lambda a: a / (1 - a)).status == "passed"


@pytest.mark.parametrize("number", sorted(p.name[:2] for p in (ROOT / "solutions").glob("*.ipynb"))[1:])  # 01: the fixture
def test_every_assignment_grades_its_solution_full_and_its_hand_out_zero(tmp_path, number, limits):
    """Chapter 01's pair is graded in the ``graded`` fixture. This is also the suite's one execution of each
    solution and hand-out outside nbval (it replaced a second, identical run in tests/test_exercises.py)."""
    solution, = (ROOT / "solutions").glob(f"{number}_*.ipynb")
    exercise, = (ROOT / "exercises").glob(f"{number}_*.ipynb")
    rows = grade.grade([solution, exercise], number, tmp_path / "g.csv", jobs=2, limits=limits, progress=False)
    full, blank = sorted(rows, key=lambda r: r["file"].startswith(str(ROOT / "exercises")))
    official = nbformat.read(exercise, as_version=4)
    assert full["points"] == full["max_points"] == sum(p for _, p in grade.checks_of(official)) > 0, full["notes"]
    assert blank["points"] == 0 and full["status"] == blank["status"] == "graded"
    for check, _ in grade.checks_of(official):  # every verdict read: each check passes, each hand-out task is "not done"
        assert (full[check], blank[check]) == ("passed", "not done"), (check, full["notes"], blank["notes"])
    for answer in grade.answers_of(official):
        assert (full[answer], blank[answer]) == ("answered", "blank")


def test_the_command_shows_progress_and_says_where_the_grades_are(tmp_path, capsys):
    (tmp_path / "a.txt").write_text("not a notebook")
    (tmp_path / "b.ipynb").write_text("{")
    out = tmp_path / "grades.csv"
    assert main(["grade", str(tmp_path / "a.txt"), str(tmp_path / "b.ipynb"), "--assignment", "01",
                 "--out", str(out), "--jobs", "2"]) == 0
    captured = capsys.readouterr()
    assert "2/2" in captured.err and "grading 01_forward_process" in captured.err  # the progress bar
    assert f"2 submission(s): 1 not a notebook, 1 unreadable; 2 with notes. Grades: {out}" in captured.out
    assert [r["status"] for r in csv.DictReader(out.open())] in (["not a notebook", "unreadable"],
                                                                 ["unreadable", "not a notebook"])


def test_a_memory_limit_too_low_for_the_course_says_so_instead_of_failing_the_learner(tmp_path):
    [row] = grade.grade([ROOT / "solutions" / "01_forward_process.ipynb"], "01", tmp_path / "g.csv",
                        limits=grade.Limits(memory_mb=1200), progress=False)
    assert row["status"] == "not graded" and "--memory-mb" in row["notes"], row["notes"]


def test_submissions_are_listed_once_without_the_grades_or_the_feedback(tmp_path):
    (tmp_path / "class" / "bob").mkdir(parents=True)
    for name in ("alice.ipynb", "bob/01.ipynb", "grades.csv", ".hidden.ipynb"):
        (tmp_path / "class" / name).write_text("{}")
    (tmp_path / "class" / "feedback").mkdir()
    (tmp_path / "class" / "feedback" / "alice.ipynb").write_text("{}")
    found = grade.submissions([tmp_path / "class", tmp_path / "class" / "alice.ipynb"],
                              exclude=[tmp_path / "class" / "grades.csv", tmp_path / "class" / "feedback"])
    assert [p.relative_to(tmp_path / "class").as_posix() for p in found] == ["alice.ipynb", "bob/01.ipynb"]
    with pytest.raises(ValueError, match="--feedback .* is inside the submissions folder"):
        grade.grade([tmp_path / "class"], "01", tmp_path / "g.csv", feedback=tmp_path / "class" / "feedback")


@pytest.mark.parametrize("path", sorted((ROOT / "exercises").glob("*.ipynb")), ids=lambda p: p.name)
def test_each_check_cell_is_named_after_the_task_its_check_reports(path):
    """The grader expects check cell ``check_X`` to emit the verdict of task ``X``: hold the course to it."""
    import re

    for cell in nbformat.read(path, as_version=4).cells:
        if cell.metadata.get("nbgrader", {}).get("grade") and not cell.metadata["nbgrader"]["solution"]:
            called = re.search(r"checks\.(check_\w+)\(", cell.source).group(1)
            assert "check_" + getattr(checks, called).task == cell.metadata["nbgrader"]["grade_id"]
