"""Exercises and solutions from one source: no drift, no leaked answers, nbgrader-valid metadata, stamps."""
import json
from pathlib import Path

import nbformat
import pytest

from diffusion_edu.course import authoring

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = sorted((ROOT / "solutions").glob("*.ipynb"))
EXERCISES = sorted((ROOT / "exercises").glob("*.ipynb"))


def test_exercises_are_generated_from_the_solutions_without_drift():
    assert authoring.exercises(ROOT, check=True) == [], "run `diffusion-edu exercises` and commit the result"
    assert [p.name for p in EXERCISES] == [p.name for p in SOLUTIONS]


@pytest.mark.parametrize("path", EXERCISES, ids=lambda p: p.name)
def test_no_exercise_contains_a_solution_marker(path):
    assert not authoring.MARKER.search(path.read_text())


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.name)
def test_solution_tasks_have_nbgrader_metadata_and_checks(path):
    nb = nbformat.read(path, as_version=4)
    tasks = authoring.tasks(nb)
    assert 3 <= len(tasks) <= 6, f"{path.name}: {len(tasks)} tasks, the course asks for 3–6"
    ids = [c.metadata["nbgrader"]["grade_id"] for c in nb.cells if "nbgrader" in c.metadata]
    assert len(ids) == len(set(ids)), "grade_ids must be unique"
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader")
        if meta:
            assert meta["schema_version"] == 3 and isinstance(meta["grade_id"], str)
            if meta["solution"]:
                assert authoring.BEGIN in cell.source and authoring.END in cell.source
            if meta["grade"]:
                assert meta["points"] > 0 and (meta["locked"] or meta["solution"])
        elif authoring.BEGIN in cell.source:
            pytest.fail(f"{path.name}: a cell with a solution marker needs nbgrader metadata")
    graded = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")]
    assert len(graded) >= len(tasks), "every task needs a check cell (a written answer is its own, graded by hand)"


def test_make_exercise_replaces_regions_with_nbgrader_stubs():
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("def f(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION\n"),
        nbformat.v4.new_markdown_cell("Why?\n\n### BEGIN SOLUTION\nBecause.\n### END SOLUTION"),
    ])
    ex = authoring.make_exercise(nb)
    assert ex.cells[0].source == "def f(x):\n    # YOUR CODE HERE\n    raise NotImplementedError()\n"
    assert ex.cells[1].source == "Why?\n\nYOUR ANSWER HERE"
    with pytest.raises(ValueError, match="without"):
        authoring.make_exercise(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("### BEGIN SOLUTION\nx")]))


@pytest.mark.parametrize("path", authoring.notebooks(ROOT), ids=lambda p: p.name)
def test_every_notebook_carries_the_badge_and_setup_cell_from_the_one_setting(path):
    setting = authoring.settings(ROOT)
    cells = json.loads(path.read_text())["cells"]
    rel = path.relative_to(ROOT).as_posix()
    assert "".join(cells[0]["source"]) == authoring.badge_source(rel, setting)
    assert "".join(cells[1]["source"]) == authoring.setup_source(setting)
    assert setting["repository"] in "".join(cells[1]["source"])


def test_stamp_is_idempotent(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Title")])
    setting = {"repository": "someone/course", "branch": "dev"}
    once = authoring.stamp(nb, "notebooks/x.ipynb", setting)
    twice = authoring.stamp(nbformat.from_dict(json.loads(nbformat.writes(once))), "notebooks/x.ipynb", setting)
    assert nbformat.writes(once) == nbformat.writes(twice)
    assert "someone/course/blob/dev/notebooks/x.ipynb" in once.cells[0].source


# Each solution passing every check and each hand-out reporting every task as not done is tested where the
# grader runs them (tests/test_grade.py): one execution of each serves both, beside nbval's own.
