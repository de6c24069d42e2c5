"""The website's own code, without Sphinx or a browser (cheap; runs in `make test`).

site/course_site.py discovers the chapters (notebooks/NN_*.ipynb joined with the README's chapter table) and
puts a header on each chapter page (Colab, download, exercise, solution, run time, previous/next) in memory;
site/check_links.py checks the built HTML's internal links. Both are tested here on the real repository and
on a made-up one with a chapter 99, so that a new chapter needs no change to the site.
"""
from __future__ import annotations

import importlib.util
import json
import re
import shutil
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "site" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


site = _load("course_site")
links = _load("check_links")
README = (ROOT / "README.md").read_text(encoding="utf-8")
NOTEBOOKS = sorted(ROOT.glob("notebooks/[0-9][0-9]_*.ipynb"))
CHAPTERS, PROBLEMS = site.discover(ROOT)


def test_the_readme_table_has_a_row_for_every_chapter_notebook_and_no_other():
    rows = site.readme_chapters(README)
    assert sorted(rows) == [p.stem for p in NOTEBOOKS]
    assert PROBLEMS == []
    assert [c.name for c in CHAPTERS] == [p.stem for p in NOTEBOOKS]
    for chapter in CHAPTERS:
        assert chapter.in_readme and chapter.builds, chapter
        full, fast = chapter.run_times()
        assert full.startswith("~") and fast.startswith("~"), f"{chapter.name}: run time {chapter.run_time!r}"


def test_every_chapter_after_00_has_its_exercise_and_solution():
    for chapter in CHAPTERS[1:]:
        assert chapter.exercise == f"exercises/{chapter.name}.ipynb"
        assert chapter.solution == f"solutions/{chapter.name}.ipynb"


def _header_links(markdown: str) -> tuple[list[str], list[str]]:
    """(link targets, download targets) of a header."""
    targets = re.findall(r"\]\(([^)]+)\)", markdown)
    return [t for t in targets if not t.startswith("path:")], [t[5:] for t in targets if t.startswith("path:")]


@pytest.mark.parametrize("index", range(len(CHAPTERS)), ids=[c.name for c in CHAPTERS])
def test_each_chapter_page_gets_colab_download_exercise_and_neighbour_links(index):
    chapter = CHAPTERS[index]
    path = ROOT / chapter.notebook
    before = path.read_bytes()
    shown = json.loads(site.inject_header(before.decode(), chapter, CHAPTERS, fast=True, root=ROOT))
    assert path.read_bytes() == before, "the notebook on disk must never be written"

    header = next(c["source"] for c in shown["cells"] if "de-chapter-header" in c["source"])
    targets, downloads = _header_links(header)
    colab = site.readme_chapters(README)[chapter.name]["colab"]
    assert f"[Open in Colab]({site.colab_url(chapter.notebook, ROOT)})" in header
    assert f"(https://colab.research.google.com/github/diffusion-edu/diffusion-edu/blob/main/{chapter.notebook})" \
        in colab, "the header's Colab link is the README's"
    assert downloads[0] == f"{chapter.name}.ipynb" and "Download the notebook" in header
    for kind in ("exercise", "solution"):
        expected = getattr(chapter, kind)
        assert (f"../{expected}" in downloads) == (expected is not None)
    previous, following = CHAPTERS[index - 1] if index else None, CHAPTERS[index + 1:index + 2]
    assert (f"{previous.name}.ipynb" in targets) if previous else "(first chapter)" in header
    assert (f"{following[0].name}.ipynb" in targets) if following else "(last chapter)" in header
    assert f"/{site.CONTENTS_DOC}.md" in targets
    for target in [t for t in targets if not t.startswith(("http", "/"))] + downloads:
        assert (path.parent / target).is_file(), f"{chapter.name}'s header links {target}, which is missing"
    full, fast = chapter.run_times()
    assert f"{full} with full settings, {fast} in fast mode" in header

    # The header sits right under the title; the badge is gone, the set-up cell is hidden, the code unchanged.
    original = json.loads(before)
    title_cell = next(c for c in shown["cells"] if "de-chapter-header" in c["source"])
    assert re.match(r"# .+\n\n```\{container\} de-chapter-header", title_cell["source"])
    assert not any(c["metadata"].get("diffusion_edu") == "badge" for c in shown["cells"])
    setup = [c for c in shown["cells"] if c["metadata"].get("diffusion_edu") == "setup"]
    assert len(setup) == 1 and "remove-cell" in setup[0]["metadata"]["tags"]
    code = lambda nb: ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]  # noqa: E731
    assert code(shown) == code(original)


def test_the_header_says_which_mode_computed_the_outputs():
    chapter = CHAPTERS[1]
    assert "fast mode (`DIFFUSION_EDU_FAST=1`" in site.header_markdown(chapter, CHAPTERS, fast=True, root=ROOT)
    assert "computed in full settings" in site.header_markdown(chapter, CHAPTERS, fast=False, root=ROOT)


def test_navigation_contents_and_notation_cover_every_chapter():
    toctree = site.toctree_markdown(CHAPTERS)
    assert all(f"\n{c.docname}\n" in toctree for c in CHAPTERS)
    assert f"\n{site.NOTATION_DOC}\n" in toctree and f"<{site.RESULTS_DOC}>" in toctree
    contents = site.contents_markdown(CHAPTERS)
    rows = [line for line in contents.splitlines()[2:]]
    assert len(rows) == len(CHAPTERS)
    for row, chapter in zip(rows, CHAPTERS):
        assert f"(/{chapter.notebook})" in row and chapter.builds.replace("|", "\\|") in row
    notation = site.readme_section(README, site.NOTATION_HEADING)
    assert site.parse_table(notation)[0].keys() == {"code", "symbol", "meaning"}


def _fake_repo(tmp_path: Path, with_row: bool = True) -> Path:
    """A copy of the README, pyproject.toml and the last two chapters, plus a made-up chapter 99 (as another engineer adds)."""
    root = tmp_path / "repo"
    for d in ("notebooks", "exercises", "solutions"):
        (root / d).mkdir(parents=True)
    shutil.copy(ROOT / "pyproject.toml", root)
    readme = README
    for chapter in CHAPTERS[-2:]:
        for d in ("notebooks", "exercises", "solutions"):
            if (ROOT / d / f"{chapter.name}.ipynb").exists():
                shutil.copy(ROOT / d / f"{chapter.name}.ipynb", root / d)
    shutil.copy(ROOT / CHAPTERS[-1].notebook, root / "notebooks" / "99_next.ipynb")
    shutil.copy(ROOT / CHAPTERS[-1].notebook, root / "solutions" / "99_next.ipynb")
    if with_row:
        last = site.readme_chapters(README)[CHAPTERS[-1].name]
        row = ("| [99 next](notebooks/99_next.ipynb) | inpainting and deblurring | ~1 min / ~20 s "
               "| [exercise](exercises/99_next.ipynb) | [open](x) |")
        line = next(line for line in README.splitlines() if last["chapter"] in line)
        readme = readme.replace(line, line + "\n" + row)
    (root / "README.md").write_text(readme, encoding="utf-8")
    return root


def test_a_new_chapter_08_needs_no_change_to_the_site(tmp_path):
    root = _fake_repo(tmp_path)
    chapters, problems = site.discover(root)
    names = [c.name for c in chapters]
    assert names[-1] == "99_next" and not [n for n in names if n[:2] < "06"]
    assert problems == [f"README.md's chapter table links notebooks/{c.name}.ipynb, which does not exist"
                        for c in CHAPTERS[:-2]]  # only 06–07 were copied
    new, before = chapters[-1], chapters[-2]
    assert (new.label, new.builds, new.run_times()) == ("99 next", "inpainting and deblurring",
                                                        ("~1 min", "~20 s"))
    assert (new.exercise, new.solution) == (None, "solutions/99_next.ipynb")  # no hand-out yet
    header = site.header_markdown(before, chapters, fast=True, root=root)
    assert "[99 next →](99_next.ipynb)" in header
    header = site.header_markdown(new, chapters, fast=True, root=root)
    assert f"[← {before.label}]({before.name}.ipynb)" in header and "(last chapter)" in header
    assert "colab.research.google.com/github/diffusion-edu/diffusion-edu/blob/main/notebooks/99_next" \
        in header
    assert "\nnotebooks/99_next\n" in site.toctree_markdown(chapters)


def test_a_chapter_without_a_readme_row_is_reported(tmp_path):
    chapters, problems = site.discover(_fake_repo(tmp_path, with_row=False))
    assert chapters[-1].name == "99_next" and not chapters[-1].in_readme
    assert any(p.startswith("notebooks/99_next.ipynb has no row") for p in problems)


def test_table_rows_split_on_pipes_outside_code_only():
    assert site.split_row("| a | `x | y` | b \\| c |") == ["a", "`x | y`", "b | c"]
    assert site.rebase_links("see [x](docs/A.md), [y](https://e.org) and [z](#top)") == \
        "see [x](/docs/A.md), [y](https://e.org) and [z](#top)"
    with pytest.raises(LookupError):
        site.readme_section(README, "No such section")


# ----------------------------------------------------------------------------------------- static widgets

def _state(**models):
    return {key: {"model_name": name, "state": state} for key, (name, state) in models.items()}


def test_a_widget_becomes_its_figure_and_its_controls_in_words():
    png = {"output_type": "display_data", "data": {"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"}}
    state = _state(
        box=("VBoxModel", {"children": ["IPY_MODEL_controls", "IPY_MODEL_out"]}),
        controls=("HBoxModel", {"children": ["IPY_MODEL_t", "IPY_MODEL_schedule"]}),
        t=("IntSliderModel", {"description": "t", "value": 300, "max": 999}),
        schedule=("DropdownModel", {"description": "schedule", "index": 1,
                                    "_options_labels": ["linear", "cosine"]}),
        out=("OutputModel", {"outputs": [png]}),
        bar=("HBoxModel", {"children": ["IPY_MODEL_d", "IPY_MODEL_p", "IPY_MODEL_n"]}),
        d=("HTMLModel", {"value": "training:\u2007100%"}),
        p=("FloatProgressModel", {"value": 10.0, "max": 10.0}),
        n=("HTMLModel", {"value": "\u200710/10\u2007[00:01&lt;00:00]"}),
    )
    assert site.static_widget(state, "box") == ([], ["t = 300", "schedule = cosine"], [png])
    texts, controls, outputs = site.static_widget(state, "bar")
    assert " ".join(t.strip() for t in texts) == "training: 100% |██████████| 10/10 [00:01<00:00]"
    assert (controls, outputs) == ([], [])
    assert site.static_widget(state, "missing") == ([], [], [])


def test_widget_outputs_become_image_files_and_errors_are_reported(tmp_path):
    pytest.importorskip("docutils", reason="docutils comes with the site extra")
    import base64

    raw = b"\x89PNG\r\n\x1a\nfake"
    warnings = []
    made = site._output_nodes(
        [{"output_type": "display_data", "data": {"image/png": base64.b64encode(raw).decode()}},
         {"output_type": "error", "ename": "ValueError", "evalue": "bad", "traceback": ["\x1b[31mValueError\x1b[0m"]}],
        tmp_path / "out", tmp_path, warnings.append)
    assert made[0]["uri"].startswith("/out/") and (tmp_path / made[0]["uri"][1:]).read_bytes() == raw
    assert made[1].astext() == "ValueError" and warnings == ["a widget's output holds an error: ValueError: bad"]


# ------------------------------------------------------------------------------------------------ the rest

def test_the_site_extra_is_bounded_and_leaves_torch_alone():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extra = project["optional-dependencies"]["site"]
    names = {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower() for r in extra}
    assert {"sphinx", "myst-nb", "sphinx-book-theme", "jupyter-cache"} <= names
    assert not names & {"torch", "torchvision", "torchaudio"}
    for requirement in extra:
        assert "==" in requirement or "<" in requirement, f"{requirement}: bound it above"
    make = (ROOT / "Makefile").read_text()
    assert '-e ".[dev,site]"' in make and "\nsite:" in make and "\nsite-full:" in make and "\ntest-site:" in make


def _write(path: Path, body: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"<!DOCTYPE html><html><body>{body}</body></html>")


def test_the_link_checker_finds_missing_files_anchors_and_repository_paths(tmp_path):
    site_dir = tmp_path / "site"
    _write(site_dir / "index.html", '<a href="README.html#chapters">ok</a> <a href="#">button</a>'
                                    ' <img src="_images/a.png"> <a href="https://example.org/x">ext</a>')
    _write(site_dir / "README.html", '<h2 id="chapters">Chapters</h2><a href="notebooks/01.html#nope">bad</a>'
                                     '<a href="gone.html">gone</a><script src="_static/mathjax/tex-chtml.js"></script>'
                                     '<a href="https://colab.research.google.com/github/diffusion-edu/diffusion-edu/'
                                     'blob/main/notebooks/99_missing.ipynb">colab</a>'
                                     '<a href="https://github.com/diffusion-edu/diffusion-edu/blob/main/README.md">gh</a>'
                                     '<a href="../../etc/passwd">out</a>')
    _write(site_dir / "notebooks" / "01.html", '<p id="top"><a href="../README.html">up</a></p>')
    (site_dir / "_images").mkdir()
    (site_dir / "_images" / "a.png").write_bytes(b"png")
    problems, counts = links.check(site_dir, ROOT)
    assert counts["external"] == 1 and counts["repository"] == 2 and counts["pages"] == 3
    assert len(problems) == 5, problems
    expected = ["no id 'nope'", "no such file gone.html", "no such file _static/mathjax/tex-chtml.js",
                "99_missing.ipynb, which is not in the repository", "leaves the site"]
    for text in expected:
        assert any(text in p for p in problems), (text, problems)
    assert links.main([str(tmp_path / "nothing")]) == 1


def test_the_output_cache_is_one_a_mode_and_package(tmp_path):
    (tmp_path / "diffusion_edu").mkdir()
    (tmp_path / "diffusion_edu" / "a.py").write_text("x = 1\n")
    fast = site.execution_cache(tmp_path, "fast")
    assert fast == site.execution_cache(tmp_path, "fast") and fast.name.startswith("fast-")
    assert site.execution_cache(tmp_path, "full").name == fast.name.replace("fast-", "full-")
    fast.mkdir(parents=True)
    (tmp_path / "diffusion_edu" / "a.py").write_text("x = 2\n")  # the package changed: its outputs may too
    changed = site.execution_cache(tmp_path, "fast")
    assert changed != fast and not fast.exists()


def _display_math_not_set_apart(markdown: str) -> list[int]:
    """Line numbers of ``$$`` blocks that touch a line of text: MyST (the site) reads them only with a blank line
    before and after, whereas Jupyter lifts math out before it parses the markdown and shows them either way."""
    lines, bad, i, fence = markdown.split("\n"), [], 0, False
    while i < len(lines):
        line = lines[i]
        if line.lstrip().startswith(("```", "~~~")):
            fence = not fence
        if fence or not line.lstrip().startswith("$$"):
            i += 1
            continue
        one_line = line.strip() != "$$" and line.rstrip().endswith("$$") and len(line.strip()) > 4
        end = i if one_line else next((j for j in range(i + 1, len(lines)) if lines[j].rstrip().endswith("$$")), None)
        if end is None:  # no closing $$: not a display block
            i += 1
            continue
        if (i > 0 and lines[i - 1].strip()) or (end + 1 < len(lines) and lines[end + 1].strip()):
            bad.append(i + 1)
        i = end + 1
    return bad


def test_the_checker_finds_display_math_that_touches_text():
    assert _display_math_not_set_apart("Bayes' rule reads\n$$\na\n- b\n$$\n\nend") == [2]
    assert _display_math_not_set_apart("one\n\n$$x = 1$$\nwhere") == [3]
    assert _display_math_not_set_apart("one\n\n$$\nx\n$$\n\ntwo\n```\n$$ in code\n```") == []
    assert _display_math_not_set_apart("open $$ never closed") == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_display_math_block_is_set_apart_by_blank_lines(path):
    # The site shows the notebooks as they are (no in-memory rewriting), so each $$ block needs its blank lines.
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    bad = {i: found for i, cell in enumerate(cells) if cell["cell_type"] == "markdown"
           and (found := _display_math_not_set_apart("".join(cell["source"])))}
    assert not bad, f"{path.name}: $$ blocks without a blank line before and after (cell: lines) {bad}"
