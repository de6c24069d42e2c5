"""The course as a website: the Sphinx glue between diffusion-edu's notebooks and its site (issue 15).

Nothing here knows the chapters by name. They are discovered at build time, every time:
``notebooks/[0-9][0-9]_*.ipynb`` gives the chapters, the README's chapter table gives each one's line on what
it builds and its run time, ``exercises/`` and ``solutions/`` give its hand-out and answer when they exist, and
``[tool.diffusion-edu]`` of pyproject.toml gives the Colab links (as for the notebooks' own badges). Adding a
chapter (a notebook and its README row) changes the site with no edit here.

What the extension does, all at build time and all in memory (``notebooks/*.ipynb`` are never written):

- ``source-read``: each chapter's notebook JSON gets a header under its title (Open in Colab, Download the
  notebook, its exercise and solution, its run time, previous/next chapter); the stamped Colab badge cell is
  dropped (the header has the link) and the stamped set-up cell ("install the package if it is missing", for
  Colab) is tagged ``remove-cell`` (it still runs). The README, the landing page, gets the site's toctree.
- ``doctree-read``: every ipywidgets view becomes its static figure: the Output widget's captured outputs (the
  figure for the controls' initial values), the controls' values in words, a tqdm bar as its final text.
  No widget JavaScript is loaded, from a CDN or otherwise.
- directives ``course-chapters`` (the contents table) and ``readme-section`` (a README section, e.g. the
  notation table), for the pages in ``site/``.
- ``build-finished``: copies MathJax 3 (from the ``django-static-mathjax`` wheel) into ``_static/mathjax``, so
  math is typeset without any network.
"""
from __future__ import annotations

import base64
import dataclasses
import hashlib
import html
import json
import os
import re
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHAPTER_GLOB = "notebooks/[0-9][0-9]_*.ipynb"
CHAPTERS_HEADING = "Chapters"
NOTATION_HEADING = "Notation and conventions"
BADGE, SETUP = "badge", "setup"  # diffusion_edu.course.authoring's cell roles (cell metadata "diffusion_edu")
ROLE_KEY = "diffusion_edu"
CONTENTS_DOC, NOTATION_DOC, RESULTS_DOC = "site/contents", "site/notation", "docs/BENCHMARKS"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


# ------------------------------------------------------------------------------------- the README's tables

def readme_section(readme: str, heading: str) -> str:
    """The body of the README section ``## heading`` (without its heading), up to the next heading of level ≤ 2."""
    lines, body, inside, fence = readme.splitlines(), [], False, False
    for line in lines:
        if line.lstrip().startswith("```"):
            fence = not fence
        if not fence and re.match(r"#{1,2} ", line):
            if inside:
                break
            inside = line.lstrip("#").strip() == heading
            continue
        if inside:
            body.append(line)
    if not inside and not body:
        raise LookupError(f"README.md has no section '## {heading}'")
    return "\n".join(body).strip("\n")


def split_row(line: str) -> list[str]:
    """The cells of one markdown table row; ``|`` inside backticks or escaped as ``\\|`` does not split."""
    cells, cell, code = [], [], False
    text = line.strip()
    text = text[1:] if text.startswith("|") else text
    text = text[:-1] if text.endswith("|") and not text.endswith("\\|") else text
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text) and text[i + 1] == "|":
            cell.append("|")
            i += 2
            continue
        if ch == "`":
            code = not code
        if ch == "|" and not code:
            cells.append("".join(cell).strip())
            cell = []
        else:
            cell.append(ch)
        i += 1
    cells.append("".join(cell).strip())
    return cells


def parse_table(markdown: str) -> list[dict[str, str]]:
    """The first pipe table in ``markdown``, as one dict a row keyed by the header's (lower-cased) cells."""
    lines = [line for line in markdown.splitlines()]
    for i in range(len(lines) - 1):
        if lines[i].lstrip().startswith("|") and re.fullmatch(r"\s*\|?[\s:|-]+\|?\s*", lines[i + 1]) \
                and "-" in lines[i + 1]:
            header = [h.lower() for h in split_row(lines[i])]
            rows = []
            for line in lines[i + 2:]:
                if not line.lstrip().startswith("|"):
                    break
                cells = split_row(line)
                rows.append(dict(zip(header, cells + [""] * (len(header) - len(cells)))))
            return rows
    raise LookupError("no markdown table found")


LINK = re.compile(r"\[([^\]]*)\]\(([^)\s]+)\)")


def readme_chapters(readme: str) -> dict[str, dict[str, str]]:
    """Chapter name (``01_forward_process``) → its README row, found by the row's link to notebooks/NAME.ipynb."""
    rows = {}
    for row in parse_table(readme_section(readme, CHAPTERS_HEADING)):
        cell = row.get("chapter", "")
        match = LINK.search(cell)
        if match and re.fullmatch(r"notebooks/\d\d_[^/]+\.ipynb", match.group(2)):
            name = Path(match.group(2)).stem
            rows[name] = {**row, "label": match.group(1).strip()}
    return rows


def _column(row: dict[str, str], start: str) -> str:
    """A README column by the start of its header (e.g. "run time" for "run time (full / fast)")."""
    return next((value for key, value in row.items() if key.startswith(start)), "")


# ------------------------------------------------------------------------------------------------ chapters

@dataclasses.dataclass(frozen=True)
class Chapter:
    name: str                 # "01_forward_process"
    label: str                # "01 forward process" (the README's link text; the file name without a row)
    builds: str               # the README's "what you build" (markdown), "" without a row
    run_time: str             # the README's "run time (full / fast)", e.g. "~12 s / ~9 s"
    exercise: str | None      # "exercises/01_forward_process.ipynb" when that file exists
    solution: str | None
    in_readme: bool

    @property
    def number(self) -> str:
        return self.name[:2]

    @property
    def notebook(self) -> str:
        return f"notebooks/{self.name}.ipynb"

    @property
    def docname(self) -> str:
        return f"notebooks/{self.name}"

    def run_times(self) -> tuple[str, str]:
        """(full, fast) from "~12 s / ~9 s"; ("", "") when the README gives none."""
        parts = [p.strip() for p in self.run_time.split("/")]
        return (parts[0], parts[1]) if len(parts) == 2 else (self.run_time.strip(), "")


def discover(root: Path = ROOT) -> tuple[list[Chapter], list[str]]:
    """Every chapter, in order, and the problems found (a notebook without a README row, or the reverse)."""
    readme = (root / "README.md").read_text(encoding="utf-8")
    rows = readme_chapters(readme)
    chapters, problems = [], []
    for path in sorted(root.glob(CHAPTER_GLOB)):
        row = rows.get(path.stem)
        if row is None:
            problems.append(f"{path.relative_to(root).as_posix()} has no row in README.md's chapter table "
                            f"(## {CHAPTERS_HEADING}): the contents page and its header lack its line and run time")
        exercise, solution = (f"{d}/{path.name}" if (root / d / path.name).is_file() else None
                              for d in ("exercises", "solutions"))
        chapters.append(Chapter(
            name=path.stem, label=row["label"] if row else path.stem.replace("_", " "),
            builds=_column(row, "what") if row else "", run_time=_column(row, "run time") if row else "",
            exercise=exercise, solution=solution, in_readme=row is not None,
        ))
    found = {c.name for c in chapters}
    problems += [f"README.md's chapter table links notebooks/{name}.ipynb, which does not exist"
                 for name in rows if name not in found]
    return chapters, problems


def colab_url(path: str, root: Path = ROOT) -> str:
    """The Colab link of a notebook, from ``[tool.diffusion-edu]`` (the same as the notebooks' own badges)."""
    import tomllib

    setting = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["diffusion-edu"]
    return f"https://colab.research.google.com/github/{setting['repository']}/blob/{setting['branch']}/{path}"


def _escape(text: str) -> str:
    """Text safe inside a MyST link label or role title."""
    return re.sub(r"([\[\]<>`*_])", r"\\\1", text)


def header_markdown(chapter: Chapter, chapters: list[Chapter], *, fast: bool, root: Path = ROOT) -> str:
    """The header put under a chapter's title (MyST, links relative to notebooks/)."""
    i = [c.name for c in chapters].index(chapter.name)
    previous, following = (chapters[i - 1] if i > 0 else None), (chapters[i + 1] if i + 1 < len(chapters) else None)
    run = [f"[Open in Colab]({colab_url(chapter.notebook, root)})",
           f"[Download the notebook](path:{chapter.name}.ipynb)"]  # path: a download, not a link to the page
    if chapter.exercise:
        run.append(f"[exercise](path:../{chapter.exercise})")
    if chapter.solution:
        run.append(f"[solution](path:../{chapter.solution})")
    full, quick = chapter.run_times()
    if full and quick:
        time = f"{full} with full settings, {quick} in fast mode, on a 2-core CPU"
    elif full:
        time = f"{full} on a 2-core CPU"
    else:
        time = "not given in the README"
    mode = ("fast mode (`DIFFUSION_EDU_FAST=1`: fewer steps and samples; the notebook runs full settings by default)"
            if fast else "full settings")
    nav = [f"[← {_escape(previous.label)}]({previous.name}.ipynb)" if previous else "← (first chapter)",
           f"[all chapters](/{CONTENTS_DOC}.md)",
           f"[{_escape(following.label)} →]({following.name}.ipynb)" if following else "(last chapter) →"]
    return "\n".join([
        "```{container} de-chapter-header",
        "**Run it:** " + " · ".join(run),
        "",
        f"**Run time:** {time}. The outputs on this page were computed in {mode}.",
        "",
        "**Chapters:** " + " · ".join(nav),
        "```",
    ])


def inject_header(notebook_json: str, chapter: Chapter, chapters: list[Chapter], *, fast: bool,
                  root: Path = ROOT) -> str:
    """The chapter's notebook (JSON text) as the site shows it: header under the title, badge dropped, set-up hidden.

    Only markdown cells change and one code cell gains a tag, in memory: the file on disk is never written.
    """
    nb = json.loads(notebook_json)
    cells = [c for c in nb["cells"] if c.get("metadata", {}).get(ROLE_KEY) != BADGE]
    for cell in cells:
        if cell["cell_type"] == "code" and cell.get("metadata", {}).get(ROLE_KEY) == SETUP:
            tags = cell["metadata"].setdefault("tags", [])
            if "remove-cell" not in tags:
                tags.append("remove-cell")
    header = header_markdown(chapter, chapters, fast=fast, root=root)
    for cell in cells:
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        lines = source.split("\n")
        title = next((j for j, line in enumerate(lines) if re.match(r"# ", line)), None)
        if cell["cell_type"] == "markdown" and title is not None:
            cell["source"] = "\n".join(lines[:title + 1] + ["", header, ""] + lines[title + 1:])
            break
    else:  # no "# title" anywhere: the header opens the page
        cells.insert(0, {"cell_type": "markdown", "id": "de-site-header", "metadata": {}, "source": header})
    nb["cells"] = cells
    return json.dumps(nb, ensure_ascii=False)


def toctree_markdown(chapters: list[Chapter]) -> str:
    """The site's navigation, appended to the README (the landing page) at build time."""
    return "\n".join([
        "", "", "```{toctree}", ":hidden:", ":caption: Course", "", CONTENTS_DOC,
        *[c.docname for c in chapters], "```", "",
        "```{toctree}", ":hidden:", ":caption: Reference", "", NOTATION_DOC, f"Measured results <{RESULTS_DOC}>",
        "```", "",
    ])


def contents_markdown(chapters: list[Chapter]) -> str:
    """The contents table: every chapter, with its README line on what it builds (links from the site's root)."""
    lines = ["| chapter | what you build | run time (full / fast) | exercise |", "|---|---|---|---|"]
    for c in chapters:
        hand_outs = " · ".join(f"[{kind}](path:/{path})"
                               for kind, path in (("exercise", c.exercise), ("solution", c.solution)) if path)
        builds = c.builds.replace("|", "\\|") or "—"
        lines.append(f"| [{_escape(c.label)}](/{c.notebook}) | {builds} | {c.run_time or '—'} | {hand_outs or '—'} |")
    return "\n".join(lines)


def rebase_links(markdown: str) -> str:
    """Relative links of a README excerpt made relative to the site's root (``/path``), for use on any page."""
    def fix(match: re.Match) -> str:
        text, target = match.group(1), match.group(2)
        if re.match(r"[a-z][a-z0-9+.-]*:|#|/", target):
            return match.group(0)
        return f"[{text}](/{target})"
    return LINK.sub(fix, markdown)


def mark_downloads(markdown: str, docdir: Path, is_page) -> str:
    """Links to notebooks or markdown files that are no page of the site (exercises/, solutions/) made downloads.

    MyST takes a link to an existing ``.ipynb``/``.md`` file for a link to a page, and warns when there is no
    such page; ``path:`` makes it a download link instead (the file is copied into the site).
    """
    def fix(match: re.Match) -> str:
        text, target = match.group(1), match.group(2)
        path = target.split("#")[0]
        if re.match(r"[a-z][a-z0-9+.-]*:|#|/", target) or Path(path).suffix not in (".ipynb", ".md"):
            return match.group(0)
        file = (docdir / path).resolve()
        if file.is_file() and not is_page(file):
            return f"[{text}](path:{path})"
        return match.group(0)
    return LINK.sub(fix, markdown)


# -------------------------------------------------------------------------------------- the output cache

def package_fingerprint(root: Path = ROOT) -> str:
    """A hash of the package (code, weights, manifest): the notebooks' outputs depend on it as much as on their code."""
    digest = hashlib.sha256()
    package = root / "diffusion_edu"
    for path in sorted(package.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".pyo"):
            digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def execution_cache(root: Path, mode: str) -> Path:
    """The jupyter-cache folder for this mode and this package: ``build/site-cache/<mode>-<package hash>``.

    jupyter-cache keys a notebook on its code cells alone, so outputs of fast and full mode, and outputs made
    by an older package, must not share one cache: a changed package re-runs every notebook. The caches of
    older packages (same mode) are removed.
    """
    base = root / "build" / "site-cache"
    current = base / f"{mode}-{package_fingerprint(root)}"
    for old in base.glob(f"{mode}-*"):
        if old != current and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
    return current


# ------------------------------------------------------------------------------------ widgets, made static

def _model(state: dict, ref: str) -> dict | None:
    return state.get(ref.removeprefix("IPY_MODEL_")) if isinstance(ref, str) else None


def _widget_value(model: dict) -> str | None:
    """A control's value in words ("t = 300"), or None if the model is no control."""
    s, name = model.get("state", {}), model.get("model_name", "")
    if name in ("DropdownModel", "SelectModel", "RadioButtonsModel", "ToggleButtonsModel"):
        labels, index = s.get("_options_labels", []), s.get("index")
        value = labels[index] if isinstance(index, int) and 0 <= index < len(labels) else None
    elif name.endswith("SliderModel") or name in ("CheckboxModel", "ToggleButtonModel", "IntTextModel",
                                                    "FloatTextModel", "TextModel", "BoundedIntTextModel",
                                                    "BoundedFloatTextModel"):
        value = s.get("value")
    else:
        return None
    description = s.get("description") or ""
    return f"{description} = {value}" if description else f"{value}"


def _progress(model: dict) -> str:
    s = model.get("state", {})
    top = s.get("max") or 1
    filled = max(0, min(10, round(10 * (s.get("value") or 0) / top)))
    return "|" + "█" * filled + " " * (10 - filled) + "|"


def static_widget(state: dict, model_id: str) -> tuple[list[str], list[str], list[dict]]:
    """A widget view, flattened: (texts, control values, captured outputs), in display order.

    Texts come from HTML/Label widgets and progress bars (a tqdm bar reads as its final line), control values
    from sliders, dropdowns, …, and outputs from Output widgets (what their callbacks drew).
    """
    texts, controls, outputs, seen = [], [], [], set()

    def walk(ref: str) -> None:
        model = _model(state, ref)
        if model is None or id(model) in seen:
            return
        seen.add(id(model))
        s, name = model.get("state", {}), model.get("model_name", "")
        if name == "OutputModel":
            outputs.extend(s.get("outputs", []))
        elif name in ("HTMLModel", "LabelModel", "HTMLMathModel"):
            value = html.unescape(re.sub(r"<[^>]+>", "", s.get("value") or "")).replace("\u2007", " ")
            if value.strip():
                texts.append(value)
        elif name.endswith("ProgressModel"):
            texts.append(_progress(model))
        elif (value := _widget_value(model)) is not None:
            controls.append(value)
        for child in s.get("children", []) or []:
            walk(child)

    walk(model_id)
    return texts, controls, outputs


def _output_nodes(outputs: list[dict], folder: Path, srcdir: Path, warn) -> list:
    """docutils nodes for an Output widget's captured outputs: images as files beside myst-nb's own."""
    from docutils import nodes

    result = []
    for out in outputs:
        kind = out.get("output_type")
        if kind == "stream":
            text = "".join(out.get("text", ""))
            result.append(nodes.literal_block(text, text, classes=["output", "stream"]))
        elif kind == "error":
            text = "\n".join(out.get("traceback", []) or [f"{out.get('ename')}: {out.get('evalue')}"])
            text = re.sub(r"\x1b\[[0-9;]*m", "", text)
            warn(f"a widget's output holds an error: {out.get('ename')}: {out.get('evalue')}")
            result.append(nodes.literal_block(text, text, classes=["output", "traceback"]))
        elif kind in ("display_data", "execute_result"):
            data = out.get("data", {})
            for mime, suffix in (("image/png", ".png"), ("image/jpeg", ".jpeg"), ("image/svg+xml", ".svg")):
                if mime in data:
                    content = data[mime]
                    content = "".join(content) if isinstance(content, list) else content
                    raw = content.encode() if mime == "image/svg+xml" else base64.b64decode(content)
                    path = folder / f"{hashlib.sha256(raw).hexdigest()}{suffix}"
                    if not path.exists():
                        path.parent.mkdir(parents=True, exist_ok=True)
                        path.write_bytes(raw)
                    uri = "/" + os.path.relpath(path.resolve(), srcdir.resolve()).replace(os.sep, "/")
                    result.append(nodes.image(uri=uri, alt="figure"))
                    break
            else:
                if "text/html" in data:
                    body = data["text/html"]
                    result.append(nodes.raw("", "".join(body) if isinstance(body, list) else body, format="html"))
                elif "text/plain" in data:
                    text = data["text/plain"]
                    text = "".join(text) if isinstance(text, list) else text
                    result.append(nodes.literal_block(text, text, classes=["output", "text_plain"]))
    return result


WIDGET_SCRIPT = re.compile(r'<script type="' + re.escape(WIDGET_VIEW) + r'">(.*?)</script>', re.S)


def make_widgets_static(app, doctree) -> None:
    """doctree-read: replace every widget view by its static rendering, and drop the widget scripts."""
    from docutils import nodes

    env = app.env
    docname = env.docname
    js_files = getattr(env, "nb_metadata", {}).get(docname, {}).get("js_files", {})
    views = [node for node in doctree.findall(nodes.raw) if WIDGET_SCRIPT.search(node.astext())]
    if not views and "ipywidgets_state" not in js_files:
        return
    state_body = (js_files.get("ipywidgets_state") or (None, {}))[1].get("body", "{}")
    state = json.loads(state_body).get("state", {})
    folder = Path(env.mystnb_config.output_folder)
    logger = _logger()
    for node in views:
        view = json.loads(WIDGET_SCRIPT.search(node.astext()).group(1))
        texts, controls, outputs = static_widget(state, view.get("model_id", ""))
        box = nodes.container(classes=["de-widget-static"])
        if texts:
            line = " ".join(t.strip() for t in texts)
            box += nodes.literal_block(line, line, classes=["output", "text_plain"])
        if controls:
            caption = ("Interactive in Jupyter; shown here for " + ", ".join(controls)
                       + ". Open the notebook to move the controls.")
            box += nodes.paragraph(caption, caption, classes=["de-widget-caption"])
        box += _output_nodes(outputs, folder, Path(app.srcdir),
                             lambda msg: logger.warning(msg, location=node))
        if not (texts or controls or outputs):
            note = "An interactive widget: open the notebook to use it."
            box += nodes.paragraph(note, note, classes=["de-widget-caption"])
        node.replace_self(box)
    for key in [k for k in js_files if k.startswith("ipywidgets")]:
        del js_files[key]


# --------------------------------------------------------------------------------------------- Sphinx glue

def _logger():
    from sphinx.util import logging

    return logging.getLogger("course_site")


_FOUND: dict[str, list[Chapter]] = {"chapters": []}  # this build's chapters (set when the builder starts)


def _chapters() -> list[Chapter]:
    return _FOUND["chapters"]


def on_builder_inited(app) -> None:
    chapters, problems = discover(Path(app.srcdir))
    _FOUND["chapters"] = chapters
    for problem in problems:
        _logger().warning(problem)


def on_env_get_outdated(app, env, added, changed, removed) -> list[str]:
    """Re-read every chapter page (cheap: outputs come from the cache) when the list of chapters changed,
    so that previous/next links follow an added or removed chapter."""
    names = [c.name for c in _chapters()]
    if getattr(env, "course_chapter_names", None) == names:
        return []
    env.course_chapter_names = names
    return [c.docname for c in _chapters() if c.docname in env.found_docs] + [CONTENTS_DOC]


def on_source_read(app, docname: str, source: list[str]) -> None:
    chapters = _chapters()
    readme = str(Path(app.srcdir) / "README.md")
    env = app.env
    if not docname.startswith("notebooks/"):  # the markdown pages: README, site/*, docs/BENCHMARKS
        pages = {Path(env.doc2path(name)).resolve() for name in env.found_docs}
        source[0] = mark_downloads(source[0], Path(env.doc2path(docname)).parent, lambda f: f in pages)
    if docname == app.config.root_doc:
        source[0] += toctree_markdown(chapters)
        return
    chapter = next((c for c in chapters if c.docname == docname), None)
    if chapter is not None:
        app.env.note_dependency(readme)  # the header's run time and the neighbours' labels come from it
        source[0] = inject_header(source[0], chapter, chapters, fast=app.config.course_fast_mode,
                                  root=Path(app.srcdir))


def _directives():
    from sphinx.util.docutils import SphinxDirective

    class CourseChapters(SphinxDirective):
        """The table of chapters (``{course-chapters}``), from the notebooks and the README's table."""

        def run(self):
            self.env.note_dependency(str(Path(self.env.srcdir) / "README.md"))
            return self.parse_text_to_nodes(contents_markdown(_chapters()))

    class ReadmeSection(SphinxDirective):
        """A README section's body (``{readme-section} Heading``), its relative links made to work here."""

        required_arguments = 1
        final_argument_whitespace = True

        def run(self):
            readme = Path(self.env.srcdir) / "README.md"
            self.env.note_dependency(str(readme))
            try:
                body = readme_section(readme.read_text(encoding="utf-8"), self.arguments[0])
            except LookupError as error:
                return [self.state.document.reporter.warning(str(error), line=self.lineno)]
            return self.parse_text_to_nodes(rebase_links(body))

    return CourseChapters, ReadmeSection


def mathjax_source() -> Path:
    """MathJax 3's es5 build, as the ``django-static-mathjax`` wheel installs it."""
    import importlib.util

    spec = importlib.util.find_spec("mathjax")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("MathJax is missing: `make site` installs it (pip install -e '.[site]')")
    es5 = Path(list(spec.submodule_search_locations)[0]) / "static" / "mathjax" / "es5"
    if not (es5 / "tex-chtml.js").is_file():
        raise RuntimeError(f"no MathJax es5 build at {es5}")
    return es5


# The combined builds we do not load (we load tex-chtml.js): ~13 MB left out of the site.
MATHJAX_UNUSED = ["tex-svg*.js", "tex-mml-*.js", "tex-chtml-full*.js", "mml-*.js", "node-main.js"]


def copy_mathjax(app, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    source, target = mathjax_source(), Path(app.outdir) / "_static" / "mathjax"
    stamp = target / ".source"
    if stamp.is_file() and stamp.read_text() == str(source):
        return
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(*MATHJAX_UNUSED))
    stamp.write_text(str(source))


def setup(app):
    app.add_config_value("course_fast_mode", True, "env", types=frozenset({bool}))
    # This file's own hash: editing the extension re-reads every page (outputs still come from the cache).
    app.add_config_value("course_site_digest", hashlib.sha256(Path(__file__).read_bytes()).hexdigest(), "env")
    CourseChapters, ReadmeSection = _directives()
    app.add_directive("course-chapters", CourseChapters)
    app.add_directive("readme-section", ReadmeSection)
    app.connect("builder-inited", on_builder_inited)
    app.connect("env-get-outdated", on_env_get_outdated)
    app.connect("source-read", on_source_read)
    app.connect("doctree-read", make_widgets_static, priority=100)  # before Sphinx collects the images
    app.connect("build-finished", copy_mathjax)
    return {"version": "1", "parallel_read_safe": False, "parallel_write_safe": True, "env_version": 1}
