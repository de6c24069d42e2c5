"""End to end, in a real browser: JupyterLab runs chapter 01 and its t-slider redraws the figure.

Debian's chromium, driven by Playwright (never `playwright install`: it downloads browsers), opens
notebooks/01_forward_process.ipynb in a `jupyter lab` started for this test alone, runs all cells from the
Run menu, checks every cell ran without an error, then moves the widget's t-slider with the keyboard and
checks that the figure under it was redrawn. A screenshot lands in the test's tmp_path (jupyterlab.png).

Hermetic: its own port, token, Jupyter config/data/runtime dirs, IPython dir, browser profile and
checkpoint dir, all under tmp_path; no autosave, no news or update check, no request leaves 127.0.0.1. It
must not touch the repository: the notebook is opened in place (root_dir is the checkout) but never saved,
and the test asserts its bytes are unchanged. Every process it starts carries a tag in its environment
(chromium's children, started with a scrubbed environment, are found as the browser's descendants); the
test fails if any is still alive afterwards (a stray kernel, a chromium renderer), after killing it.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = "notebooks/01_forward_process.ipynb"
TAG_VAR = "DIFFUSION_EDU_BROWSER_TEST"  # set, with a fresh value, in the environment of every process we start
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
    "--disable-dev-shm-usage",  # containers often give /dev/shm 64 MB, too little for chromium
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",  # e.g. the Colab badge: fail at once, no DNS
]
# JupyterLab user settings, written to the server's own (temporary) user-settings dir.
LAB_SETTINGS = {
    # No "fetch news?" toast, no update check, no toasts at all over the notebook.
    "@jupyterlab/apputils-extension/notification": {
        "fetchNews": "false", "checkForUpdates": False, "doNotDisturbMode": True,
    },
    # Never write the executed notebook back into the checkout (tests/test_project.py wants it stored clean).
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
}
SERVER_START_S = 120  # `jupyter lab` answering /api/status
KERNEL_IDLE_S = 120   # notebook open and its kernel started
RUN_ALL_S = 300       # the whole chapter (~10 s here in fast mode; a busy 2-core CI box is much slower)
REDRAW_S = 60         # one redraw of the widget's figure
UI_S = 60             # anything else the page has to do (Playwright's expect() waits only 5 s by default)
SHUTDOWN_S = 30


def _skip_without_browser() -> str:
    """Path to Debian's chromium; skips (visibly: a warning in the summary, too) when it or Playwright is missing."""
    reason = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        reason = ("playwright is not installed: `make install` (pip install -e '.[dev]') to run the "
                  "JupyterLab browser test")
    chromium = shutil.which("chromium")
    if reason is None and chromium is None:
        reason = ("Debian's chromium is not installed: `apt-get install chromium` (as .ci/run does) to run "
                  "the JupyterLab browser test")
    if reason is not None:
        warnings.warn(f"JupyterLab browser test skipped: {reason}", stacklevel=2)
        pytest.skip(reason)
    return chromium


# ---------------------------------------------------------------------------------------------- processes

def _process_table() -> dict[int, tuple[int, str, str, list[bytes], str]]:
    """pid -> (ppid, start time, state, environment, command line), from Linux's /proc."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            try:
                environ = (entry / "environ").read_bytes().split(b"\0")
            except OSError:  # not ours to read
                environ = []
        except (OSError, ValueError):  # gone meanwhile
            continue
        table[int(entry.name)] = (int(fields[1]), fields[19], fields[0], environ, cmdline)
    return table


def _our_processes(tag: str) -> dict[tuple[int, str], str]:
    """(pid, start time) -> command line of every live process carrying our tag, and of their descendants.

    Chromium starts its zygotes, renderers and GPU process with a scrubbed environment: they are found as
    descendants of the (tagged) browser process, so call this while the browser still runs.
    """
    needle = f"{TAG_VAR}={tag}".encode()
    table = {pid: row for pid, row in _process_table().items() if row[2] not in ("Z", "X")}
    ours = {pid for pid, row in table.items() if needle in row[3]}
    while more := {pid for pid, row in table.items() if row[0] in ours and pid not in ours}:
        ours |= more
    return {(pid, table[pid][1]): table[pid][4] for pid in ours}


def _reap(tag: str, seen: dict[tuple[int, str], str], grace_s: float = 10.0) -> dict[tuple[int, str], str]:
    """Wait for our processes (tagged now, or seen earlier) to end; SIGKILL what is left after grace_s."""
    def alive():
        table = _process_table()
        left = {key: cmd for key, cmd in seen.items()
                if key[0] in table and table[key[0]][1] == key[1] and table[key[0]][2] not in ("Z", "X")}
        return {**left, **_our_processes(tag)}

    if not Path("/proc/self/stat").exists():  # not Linux: nothing to check
        return {}
    deadline = time.monotonic() + grace_s
    while (left := alive()) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid, _ in left:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    return left


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------------------- jupyter lab

class Lab:
    def __init__(self, port: int, token: str, proc: subprocess.Popen, log: Path):
        self.port, self.token, self.proc, self.log = port, token, proc, log
        self.base = f"http://127.0.0.1:{port}"

    def api(self, path: str, method: str = "GET", timeout: float = 10.0):
        request = urllib.request.Request(f"{self.base}{path}", method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
        return json.loads(body) if body else None

    def log_tail(self, chars: int = 6000) -> str:
        return self.log.read_text(errors="replace")[-chars:]


def _start_lab(tmp_path: Path, env: dict, attempt: int) -> Lab:
    port, token = _free_port(), secrets.token_hex(24)
    log = tmp_path / f"jupyter-lab-{attempt}.log"
    command = [
        sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
        "--ServerApp.port_retries=0", "--allow-root", f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={ROOT}",
        f"--FileCheckpoints.checkpoint_dir={tmp_path / 'checkpoints'}",  # not notebooks/.ipynb_checkpoints
        f"--LabApp.user_settings_dir={tmp_path / 'lab-settings'}",
        f"--LabApp.workspaces_dir={tmp_path / 'lab-workspaces'}",
        "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    return Lab(port, token, proc, log)


def _wait_for_lab(lab: Lab) -> bool:
    """True once the server answers; False if it died (e.g. lost its port to another process)."""
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if lab.proc.poll() is not None:
            return False
        try:
            lab.api("/api/status", timeout=5)
            return True
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.25)
    pytest.fail(f"jupyter lab did not answer within {SERVER_START_S} s; its log:\n{lab.log_tail()}")


def _stop_lab(lab: Lab) -> None:
    """Shut its kernels down through the REST API, then the server (SIGTERM, SIGKILL after a timeout)."""
    if lab.proc.poll() is None:
        with contextlib.suppress(Exception):
            for kernel in lab.api("/api/kernels"):
                with contextlib.suppress(Exception):
                    lab.api(f"/api/kernels/{kernel['id']}", method="DELETE", timeout=SHUTDOWN_S)
        lab.proc.terminate()  # jupyter_server shuts any remaining kernel down on SIGTERM too
    try:
        lab.proc.wait(SHUTDOWN_S)
    except subprocess.TimeoutExpired:
        lab.proc.kill()
        lab.proc.wait(SHUTDOWN_S)


@contextlib.contextmanager
def jupyter_lab(tmp_path: Path, tag: str):
    settings = tmp_path / "lab-settings"
    for name, values in LAB_SETTINGS.items():
        path = settings / f"{name}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    env = dict(
        os.environ,
        JUPYTER_CONFIG_DIR=str(tmp_path / "jupyter-config"),
        JUPYTER_DATA_DIR=str(tmp_path / "jupyter-data"),  # the venv's kernelspec stays: sys.prefix/share/jupyter
        JUPYTER_RUNTIME_DIR=str(tmp_path / "jupyter-runtime"),
        JUPYTER_PLATFORM_DIRS="1",
        IPYTHONDIR=str(tmp_path / "ipython"),
        DIFFUSION_EDU_FAST="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
        **{TAG_VAR: tag},
    )
    for attempt in range(3):  # the free port can be taken between our probe and the server's bind
        lab = _start_lab(tmp_path, env, attempt)
        try:
            if _wait_for_lab(lab):
                break
        except BaseException:
            _stop_lab(lab)
            raise
        if "already in use" not in lab.log_tail():
            pytest.fail(f"jupyter lab exited with code {lab.proc.returncode}; its log:\n{lab.log_tail()}")
    else:
        pytest.fail(f"jupyter lab found no free port in 3 tries; its last log:\n{lab.log_tail()}")
    try:
        yield lab
    finally:
        _stop_lab(lab)


# --------------------------------------------------------------------------------------------- the test

STATUS_ITEMS = "#jp-main-statusbar .jp-StatusBar-TextItem"
# Done: the status bar's kernel item reads "… | Idle" and no code cell is queued or running ([*]).
JS_RUN_FINISHED = """([items, prompts]) => {
    const idle = [...document.querySelectorAll(items)].some(e => /\\|\\s*Idle$/.test(e.textContent.trim()));
    const queued = [...document.querySelectorAll(prompts)].some(e => e.textContent.includes('*'));
    return idle && !queued;
}"""
# Started: some code cell is queued, running or done (a prompt other than the empty "[ ]:").
JS_RUN_STARTED = """(prompts) => [...document.querySelectorAll(prompts)].some(e => /[*0-9]/.test(e.textContent))"""
PROMPTS = ".jp-Notebook .jp-CodeCell .jp-InputPrompt"


def _drive_chapter_01(page, lab: Lab, tmp_path: Path, kernel_display_name: str) -> None:
    from playwright.sync_api import expect

    n_code_cells = sum(c["cell_type"] == "code" for c in json.loads((ROOT / NOTEBOOK).read_text())["cells"])

    page.goto(f"{lab.base}/lab/tree/{NOTEBOOK}?token={lab.token}")
    # The kernel status of the *status bar* (the toolbar's indicator says idle before a kernel is attached).
    kernel_status = page.locator(STATUS_ITEMS).filter(has_text=re.compile(r"\|\s*\w+$"))
    expect(kernel_status).to_have_text(f"{kernel_display_name} | Idle", timeout=KERNEL_IDLE_S * 1000)
    ui = UI_S * 1000
    expect(page.locator(PROMPTS)).to_have_count(n_code_cells, timeout=ui)  # every cell is in the DOM
    expect(page.locator(".jp-Dialog")).to_have_count(0, timeout=ui)        # nothing modal in the way

    # Run → Run All Cells, with the mouse, as a student would.
    page.locator("#jp-menu-panel .lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator('#jp-mainmenu-run .lm-Menu-item[data-command="runmenu:run-all"]').click()
    page.wait_for_function(JS_RUN_STARTED, arg=PROMPTS, timeout=ui, polling=100)
    page.wait_for_function(JS_RUN_FINISHED, arg=[STATUS_ITEMS, PROMPTS], timeout=RUN_ALL_S * 1000, polling=250)

    stderr = page.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')
    errors = [text for text in stderr.all_text_contents()
              if "Traceback" in text or re.search(r"^\w*(Error|Exception)\b", text, re.MULTILINE)]
    assert not errors, "the notebook raised:\n" + "\n----\n".join(errors)
    prompts = [p.strip() for p in page.locator(PROMPTS).all_text_contents()]
    assert prompts == [f"[{i}]:" for i in range(1, n_code_cells + 1)], f"not every cell ran, in order: {prompts}"
    assert page.locator('.jp-OutputArea-output[data-mime-type="image/png"] img').count() > 0, "no figure shown"

    # The widget of section 5: an IntSlider "t" (noUiSlider in ipywidgets 8) above an Output with the figure.
    t_slider = page.locator(".widget-slider").filter(
        has=page.locator("label.widget-label", has_text=re.compile(r"^t$")))
    expect(t_slider).to_have_count(1, timeout=ui)
    box = page.locator(".widget-vbox").filter(has=t_slider).last  # the innermost VBox: controls + output
    handle = t_slider.locator('.noUi-handle[role="slider"]')
    readout = t_slider.locator(".widget-readout")
    figure = box.locator(".widget-output img")
    expect(readout).to_have_text("300", timeout=ui)
    expect(figure).to_have_count(1, timeout=REDRAW_S * 1000)
    src_300 = figure.get_attribute("src")

    def move(keys: list[str], value: int, previous_src: str) -> str:
        handle.focus()
        expect(handle).to_be_focused(timeout=ui)
        for key in keys:
            page.keyboard.press(key)
        expect(readout).to_have_text(str(value), timeout=ui)
        expect(handle).to_have_attribute("aria-valuenow", re.compile(rf"^{value}(\.0+)?$"), timeout=ui)
        expect(figure).to_have_count(1, timeout=REDRAW_S * 1000)
        expect(figure).not_to_have_attribute("src", previous_src, timeout=REDRAW_S * 1000)
        # Several key presses queue several redraws (301, 302, 303): wait for the kernel to be idle and the
        # figure to stay put for a second, so that what we read is the last one.
        page.wait_for_function(JS_RUN_FINISHED, arg=[STATUS_ITEMS, PROMPTS], timeout=REDRAW_S * 1000)
        src, deadline = figure.get_attribute("src"), time.monotonic() + REDRAW_S
        while time.monotonic() < deadline:
            page.wait_for_timeout(1000)
            latest = figure.get_attribute("src")
            if latest == src:
                return src
            src = latest
        pytest.fail(f"the figure kept changing for {REDRAW_S} s after moving the slider to {value}")

    src_303 = move(["ArrowRight"] * 3, 303, src_300)
    src_999 = move(["End"], 999, src_303)
    assert len({src_300, src_303, src_999}) == 3, "the figure must differ at t = 300, 303 and 999"
    assert all(s.startswith("data:image/png;base64,") for s in (src_300, src_303, src_999))

    box.scroll_into_view_if_needed()
    page.screenshot(path=tmp_path / "jupyterlab.png", full_page=True)


def test_jupyterlab_runs_chapter_01_and_the_t_slider_redraws(tmp_path):
    chromium = _skip_without_browser()
    from playwright.sync_api import sync_playwright

    notebook_bytes = (ROOT / NOTEBOOK).read_bytes()
    tag, seen = secrets.token_hex(8), {}  # seen: our processes, (pid, start time) -> command line
    try:
        with jupyter_lab(tmp_path, tag) as lab:
            # The venv's kernelspec is the one JupyterLab offers, despite the temporary JUPYTER_DATA_DIR.
            spec = lab.api("/api/kernelspecs")["kernelspecs"].get("python3")
            assert spec is not None, f"kernelspec python3 not found; log:\n{lab.log_tail()}"
            assert Path(spec["spec"]["argv"][0]).resolve() == Path(sys.executable).resolve(), spec["spec"]["argv"]
            autosave = lab.api("/lab/api/settings/@jupyterlab/docmanager-extension:plugin")["settings"]
            assert autosave.get("autosave") is False, "autosave would write outputs into the checkout"

            with sync_playwright() as playwright:
                context = playwright.chromium.launch_persistent_context(
                    tmp_path / "chromium-profile", executable_path=chromium, headless=True, args=CHROMIUM_ARGS,
                    env={**os.environ, TAG_VAR: tag}, viewport={"width": 1400, "height": 1000},
                )
                try:
                    page = context.pages[0] if context.pages else context.new_page()
                    page.set_default_timeout(60_000)
                    try:
                        _drive_chapter_01(page, lab, tmp_path, spec["spec"]["display_name"])
                    except BaseException:
                        with contextlib.suppress(Exception):
                            page.screenshot(path=tmp_path / "jupyterlab-failure.png")
                        print(f"screenshot: {tmp_path / 'jupyterlab-failure.png'}\njupyter lab log:\n{lab.log_tail()}")
                        raise
                finally:
                    if Path("/proc/self/stat").exists():
                        seen.update(_our_processes(tag))  # jupyter lab, its kernel, chromium and its children
                    context.close()
    finally:
        strays = _reap(tag, seen)
    # Not restored if it changed: someone may have edited it meanwhile; autosave is off, asserted above.
    assert (ROOT / NOTEBOOK).read_bytes() == notebook_bytes, f"{NOTEBOOK} changed during the test: see git diff"
    assert not strays, f"processes outlived the test (killed now): {list(strays.values())}"
    print(f"screenshot: {tmp_path / 'jupyterlab.png'}")
