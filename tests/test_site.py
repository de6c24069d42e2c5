"""The course's website in a real browser: the landing page, a chapter reached by its navigation, the search.

Needs a built site (`make site`, or DIFFUSION_EDU_SITE_DIR=build/site-full after `make site-full`): the test
serves it on 127.0.0.1 (http.server in a thread of this process, on a free port) and drives Debian's chromium
with Playwright, as tests/test_browser.py does (its launch flags and process tracking are reused). On the
chapter reached by clicking the sidebar: every equation typeset by the site's own MathJax (no TeX error), every
image loaded, the widget's static figure, the header's links (Colab, the clean notebook as a download,
exercise, solution, previous/next). Then the contents, notation and results pages, and the search box, which
finds a chapter by a word of its text (Sphinx's search runs in the page, from searchindex.js). No request may
leave 127.0.0.1 (the site works offline) and no page may raise a JavaScript error. Screenshots land in the
test's tmp_path.

Without a built site or chromium the test skips with its reason; with DIFFUSION_EDU_REQUIRE_SITE=1 (`make
test-site`, .ci/run) a missing site fails it instead.
"""
from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import secrets
import shutil
import threading
import urllib.request
import warnings
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from test_browser import CHROMIUM_ARGS, TAG_VAR, _our_processes, _reap  # its launch flags, its process hygiene

ROOT = Path(__file__).resolve().parents[1]
SITE = (ROOT / os.environ.get("DIFFUSION_EDU_SITE_DIR", "build/site")).resolve()
REQUIRE = os.environ.get("DIFFUSION_EDU_REQUIRE_SITE", "") == "1"
CHAPTER = "01_forward_process"        # math, figures and a widget
SEARCH = ("Langevin", "06_score_sde")  # a word of a chapter's text, and the chapter it must find
UI_S = 60        # anything a page has to do (Playwright's expect() waits only 5 s by default)
MATHJAX_S = 120  # MathJax typesets a long chapter in the page; a busy 2-core box is slow


def _site_or_skip() -> Path:
    missing = [name for name in ("index.html", "README.html", "searchindex.js") if not (SITE / name).is_file()]
    if missing:
        reason = f"no built site in {SITE} (missing {', '.join(missing)}): run `make site` first"
        if REQUIRE:
            pytest.fail(reason + " (DIFFUSION_EDU_REQUIRE_SITE=1: the site must be there)")
        warnings.warn(f"site browser test skipped: {reason}", stacklevel=2)
        pytest.skip(reason)
    return SITE


def _chromium_or_skip() -> str:
    """Debian's chromium and Playwright, as for tests/test_browser.py; skips (visibly) without them."""
    reason = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        reason = "playwright is not installed: `make install` to run the site browser test"
    chromium = shutil.which("chromium")
    if reason is None and chromium is None:
        reason = ("Debian's chromium is not installed: `apt-get install chromium` (as .ci/run does) to run the "
                  "site browser test")
    if reason is not None:
        warnings.warn(f"site browser test skipped: {reason}", stacklevel=2)
        pytest.skip(reason)
    return chromium


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args):  # no access log on stderr
        pass


@contextlib.contextmanager
def serve(directory: Path):
    """The site over http://127.0.0.1:PORT (a free port, chosen by the OS), in a thread: no process to leave."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(30)


JS_TYPESET = """async () => {
    await window.MathJax.startup.promise;
    const math = [...document.querySelectorAll('.math')];
    return {math: math.length, bare: math.filter(m => !m.querySelector('mjx-container')).length,
            containers: document.querySelectorAll('mjx-container').length,
            errors: [...document.querySelectorAll('mjx-merror')].map(e => e.textContent)};
}"""
JS_IMAGES = """() => [...document.images].map(i => ({src: i.getAttribute('src'), w: i.naturalWidth}))"""


def _all_images_loaded(page) -> list[dict]:
    """Every <img> of the page, once each has finished loading (or failed: naturalWidth stays 0)."""
    page.wait_for_function("() => [...document.images].every(i => i.complete)", timeout=UI_S * 1000, polling=250)
    return page.evaluate(JS_IMAGES)


def _chapter_checks(page, base: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    ui = UI_S * 1000
    header = page.locator(".de-chapter-header")
    expect(header).to_have_count(1, timeout=ui)
    colab = header.get_by_role("link", name="Open in Colab")
    expect(colab).to_have_attribute(
        "href", f"https://colab.research.google.com/github/diffusion-edu/diffusion-edu/blob/main/notebooks/{CHAPTER}.ipynb")
    for name in ("exercise", "solution"):
        link = header.locator("a.download", has_text=re.compile(rf"^{name}$"))  # a download: the file itself
        expect(link).to_have_attribute("href", re.compile(rf"^\.\./_downloads/.+/{CHAPTER}\.ipynb$"))
    expect(header.get_by_role("link", name=re.compile(r"^← 00 "))).to_have_attribute("href", "00_welcome.html")
    expect(header.get_by_role("link", name=re.compile(r"^02 .* →$"))).to_have_attribute("href", "02_denoising_2d.html")
    expect(header).to_contain_text("Run time:")

    # "Download the notebook" gives the notebook as stored: no outputs.
    href = header.locator("a.download", has_text="Download the notebook").get_attribute("href")
    with urllib.request.urlopen(page.url.rsplit("/", 1)[0] + "/" + href, timeout=30) as response:
        notebook = json.loads(response.read())
    assert (ROOT / "notebooks" / f"{CHAPTER}.ipynb").read_text() and all(
        c["outputs"] == [] for c in notebook["cells"] if c["cell_type"] == "code")
    page.screenshot(path=tmp_path / "chapter-top.png")

    # Equations: every one typeset by MathJax, none a TeX error.
    page.wait_for_function("() => window.MathJax && window.MathJax.startup && window.MathJax.startup.promise",
                           timeout=MATHJAX_S * 1000, polling=250)
    math = page.evaluate(JS_TYPESET)
    assert math["math"] > 10 and math["containers"] >= math["math"], math
    assert math["bare"] == 0, f"{math['bare']} of {math['math']} equations were not typeset"
    assert math["errors"] == [], f"TeX errors: {math['errors']}"

    # Figures: the chapter's outputs, and the widget's static figure, all loaded.
    images = _all_images_loaded(page)
    figures = [i for i in images if "_images/" in i["src"]]
    assert figures and all(i["w"] > 0 for i in figures), images
    assert not [i for i in images if i["w"] == 0], f"broken images: {[i for i in images if i['w'] == 0]}"
    widget = page.locator(".de-widget-static img")
    expect(widget.first).to_be_visible(timeout=ui)
    assert page.locator('script[type="application/vnd.jupyter.widget-view+json"]').count() == 0
    expect(page.locator(".de-widget-caption").first).to_contain_text("t = 300")

    widget.last.scroll_into_view_if_needed()
    page.screenshot(path=tmp_path / "chapter-widget.png")
    first_equation = page.locator('mjx-container[display="true"]').first
    first_equation.scroll_into_view_if_needed()
    page.screenshot(path=tmp_path / "chapter-math.png")


def _drive(page, base: str, tmp_path: Path, requests: list[str], errors: list[str]) -> None:
    from playwright.sync_api import expect

    ui = UI_S * 1000
    page.goto(f"{base}/")  # index.html sends the browser on to README.html, the landing page
    expect(page).to_have_url(f"{base}/README.html", timeout=ui)
    expect(page.locator("h1").first).to_contain_text("diffusion-edu")
    page.screenshot(path=tmp_path / "landing.png")

    # A chapter, through the sidebar's navigation.
    nav = page.locator("nav.bd-docs-nav")
    nav.get_by_role("link", name=re.compile(rf"^{CHAPTER[:2]} · ")).click()
    expect(page).to_have_url(f"{base}/notebooks/{CHAPTER}.html", timeout=ui)
    _chapter_checks(page, base, tmp_path)

    # The contents page, through the navigation too: one row a chapter, each with its line from the README.
    page.locator("nav.bd-docs-nav").get_by_role("link", name="Contents", exact=True).click()
    expect(page).to_have_url(f"{base}/site/contents.html", timeout=ui)
    chapters = sorted(p.stem for p in ROOT.glob("notebooks/[0-9][0-9]_*.ipynb"))
    rows = page.locator("article table tbody tr")
    expect(rows).to_have_count(len(chapters), timeout=ui)
    for row, name in zip(rows.all(), chapters):
        expect(row.locator("td").first.locator("a")).to_have_attribute("href", f"../notebooks/{name}.html")
    page.screenshot(path=tmp_path / "contents.png", full_page=True)

    # The notation (the README's table) and the measured results (docs/BENCHMARKS.md), through the navigation.
    page.locator("nav.bd-docs-nav").get_by_role("link", name="Notation and conventions").click()
    expect(page).to_have_url(f"{base}/site/notation.html", timeout=ui)
    expect(page.locator("article table tbody tr").first).to_contain_text("timestep", timeout=ui)
    page.screenshot(path=tmp_path / "notation.png")
    page.locator("nav.bd-docs-nav").get_by_role("link", name="Measured results").click()
    expect(page).to_have_url(f"{base}/docs/BENCHMARKS.html", timeout=ui)
    assert page.locator("article table").count() >= 5
    page.screenshot(path=tmp_path / "results.png")

    # The search box: a word of a chapter's text finds that chapter, and the result opens it.
    word, target = SEARCH
    page.locator(".sidebar-primary-item button.search-button-field").click()
    box = page.locator("#pst-search-dialog input[name=q]")
    expect(box).to_be_visible(timeout=ui)
    box.fill(word)
    box.press("Enter")
    expect(page).to_have_url(re.compile(rf"/search\.html\?q={word}"), timeout=ui)
    hit = page.locator(f'#search-results a[href*="notebooks/{target}.html"]').first
    expect(hit).to_be_visible(timeout=ui)
    page.screenshot(path=tmp_path / "search.png")
    hit.click()
    expect(page).to_have_url(re.compile(rf"/notebooks/{target}\.html"), timeout=ui)

    offsite = [url for url in requests if not url.startswith((base + "/", "data:", "blob:"))]
    assert offsite == [], f"the site must work offline; it requested {offsite}"
    assert errors == [], f"JavaScript errors: {errors}"


def test_the_site_navigates_typesets_shows_figures_and_searches(tmp_path):
    site = _site_or_skip()
    chromium = _chromium_or_skip()
    from playwright.sync_api import sync_playwright

    tag, seen = secrets.token_hex(8), {}
    try:
        with serve(site) as base, sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                tmp_path / "chromium-profile", executable_path=chromium, headless=True, args=CHROMIUM_ARGS,
                env={**os.environ, TAG_VAR: tag}, viewport={"width": 1400, "height": 1000},
            )
            try:
                page = context.pages[0] if context.pages else context.new_page()
                page.set_default_timeout(UI_S * 1000)
                requests, errors = [], []
                page.on("request", lambda request: requests.append(request.url))
                page.on("pageerror", lambda error: errors.append(str(error)))
                try:
                    _drive(page, base, tmp_path, requests, errors)
                except BaseException:
                    with contextlib.suppress(Exception):
                        page.screenshot(path=tmp_path / "site-failure.png")
                    print(f"screenshot: {tmp_path / 'site-failure.png'}")
                    raise
            finally:
                if Path("/proc/self/stat").exists():
                    seen.update(_our_processes(tag))  # chromium and its children
                context.close()
    finally:
        strays = _reap(tag, seen)
    assert not strays, f"processes outlived the test (killed now): {list(strays.values())}"
    print(f"screenshots: {tmp_path}")
