"""Sphinx configuration of the course's website (`make site`; issue 15).

The source folder is the repository itself (`sphinx-build -c site . build/site`), so the README, the landing
page, keeps its links (notebooks/…, docs/BENCHMARKS.md, exercises/…) and they work inside the site. Only the
files in `include_patterns` are pages; site/course_site.py adds the per-chapter headers, the contents and
notation pages and the static widgets, and copies MathJax in. Built strictly: `make site` passes
`-W --keep-going -n`, and a notebook that raises fails the build.
"""
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import course_site  # noqa: E402  (site/course_site.py, the extension below)

# The notebooks' kernels inherit this environment: one thread each (as under `make test`), and the mode.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
FAST = os.environ.get("DIFFUSION_EDU_FAST", "").strip().lower() in ("1", "true", "yes", "on")  # = fast_mode()
MODE = "fast" if FAST else "full"

project = "diffusion-edu"
author = "the diffusion-edu authors"
copyright = "the diffusion-edu authors, MIT licence"
html_title = "diffusion-edu"

extensions = ["myst_nb", "sphinx.ext.githubpages", "course_site"]
course_fast_mode = FAST  # changing the mode re-reads every page (and its outputs come from that mode's cache)

root_doc = "README"
include_patterns = ["README.md", "notebooks/[0-9][0-9]_*.ipynb", "site/*.md", "docs/BENCHMARKS.md"]
# Pruned from Sphinx's walk of the repository (they hold no page; .venv alone has ~100k files).
exclude_patterns = [".*", "build", "dist", "shared", "diffusion_edu", "tests", "exercises", "solutions",
                    "*.egg-info", "**/.ipynb_checkpoints", "node_modules"]

# MyST: $…$ and $$…$$ math as in Jupyter, and LaTeX environments.
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3
# Jupyter shows `$$…$$` as display math even inside a paragraph (no blank line before it); so does MyST with this.
myst_dmath_double_inline = True

# myst-nb: execute every notebook, keeping the results in jupyter-cache, one cache a mode and package (the
# cache keys on a notebook's code alone); an unchanged notebook is not run again.
nb_execution_mode = "cache"
nb_execution_cache_path = str(course_site.execution_cache(HERE.parent, MODE))  # one a mode and package
nb_execution_timeout = 600           # per cell; fast mode takes ~10–60 s a notebook. No test relies on speed.
nb_execution_raise_on_error = True   # a notebook that raises fails the build
nb_execution_show_tb = True          # …and the log shows where
nb_execution_in_temp = False         # run in notebooks/, as Jupyter and nbval do
nb_merge_streams = True
nb_ipywidgets_js = {}                # no widget JavaScript from a CDN: course_site renders widgets static

# Math: MathJax 3.2.2 from the django-static-mathjax wheel, copied into _static/mathjax by course_site.
mathjax_path = "mathjax/tex-chtml.js"

html_theme = "sphinx_book_theme"
html_static_path = ["_static"]
html_css_files = ["course.css"]
html_copy_source = False             # the header links the notebook itself; no _sources/ copies
html_baseurl = "https://diffusion-edu.github.io/diffusion-edu/"
html_additional_pages = {"index": "redirect.html"}  # / → README.html, the landing page
templates_path = ["_templates"]
html_theme_options = {
    "repository_url": "https://github.com/diffusion-edu/diffusion-edu",
    "repository_branch": "main",
    "use_repository_button": True,
    "use_download_button": False,
    "use_fullscreen_button": False,
    "home_page_in_toc": True,
    "show_navbar_depth": 1,
}
html_context = {"default_mode": "light"}
