"""The project's own hygiene: set-up files agree, notebooks are stored clean, fast mode is wired."""
import json
import re
import tomllib
from pathlib import Path

import nbformat
import pytest
import yaml

import diffusion_edu as de
from diffusion_edu.course import authoring

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = authoring.notebooks(ROOT)
CONDA_NAMES = {"torch": "pytorch"}  # PyPI name → conda-forge name where they differ


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].strip().lower()


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert env["channels"] == ["conda-forge", "nodefaults"]
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    pip = [d for d in env["dependencies"] if isinstance(d, dict)]
    assert pip == [{"pip": ["-e ."]}], "the package itself is installed by pip, editable"
    conda_names = {_name(d) for d in conda}
    assert "pip" in conda_names
    python = next(d for d in conda if _name(d) == "python")
    assert python.replace(" ", "") == "python" + project["requires-python"].replace(" ", "")
    for requirement in project["dependencies"]:
        name = CONDA_NAMES.get(_name(requirement), _name(requirement))
        assert name in conda_names, f"{requirement} from pyproject.toml is missing in environment.yml"
        spec = requirement[len(_name(requirement)):].strip()
        entry = next(d for d in conda if _name(d) == name)
        assert entry.replace(" ", "") == name + spec.replace(" ", ""), f"{entry} vs {requirement}"


def test_dependencies_stay_loose_for_colab():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = {_name(d): d for d in project["dependencies"]}
    assert deps["torch"].replace(" ", "") == "torch>=2.1", "a pin would make Colab reinstall torch"
    assert deps["ipywidgets"].replace(" ", "") == "ipywidgets>=7.6", "Colab ships ipywidgets 7.7.1"
    assert not any("==" in d for d in deps.values())


def test_makefile_installs_the_torch_pin_before_the_package():
    make = (ROOT / "Makefile").read_text()
    assert "torch==2.13.0" in make
    assert make.index('"$(TORCH)"') < make.index('-e ".[dev]"')
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_there_are_notebooks():
    assert (ROOT / "notebooks" / "00_welcome.ipynb") in NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_notebook_is_stored_clean(path):
    nb = json.loads(path.read_text())
    assert nb["nbformat"] == 4
    nbformat.validate(nbformat.reads(path.read_text(), as_version=4))  # raises on anything Jupyter would reject
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, "strip outputs before committing"


@pytest.mark.parametrize("value, expected", [("1", True), ("true", True), ("0", False), ("", False)])
def test_fast_mode_reads_the_environment(monkeypatch, value, expected):
    monkeypatch.setenv("DIFFUSION_EDU_FAST", value)
    assert de.fast_mode() is expected


def test_seed_everything_and_device():
    import torch

    g = de.seed_everything(7)
    a = torch.randn(3)
    de.seed_everything(7)
    assert torch.equal(a, torch.randn(3))
    assert torch.equal(torch.randn(2, generator=g), torch.randn(2, generator=torch.Generator().manual_seed(7)))
    assert de.device().type in ("cpu", "cuda", "mps")


SOURCES = sorted((ROOT / "diffusion_edu").rglob("*.py")) + NOTEBOOKS
# Present in both ipywidgets 7.7 (Colab) and 8, with the same meaning.
COMMON_WIDGETS = {"IntSlider", "FloatSlider", "Dropdown", "VBox", "HBox", "Output", "Layout", "Checkbox",
                  "interactive_output", "Play", "jslink"}


def _code(path: Path) -> str:
    if path.suffix == ".py":
        return path.read_text()
    return "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")


def test_no_device_is_hard_coded():
    """cuda, mps or cpu: code asks `de.device()` or follows its inputs' device, never `.cuda()`."""
    pattern = re.compile(r"\.cuda\(|device\s*=\s*[\"']cuda|\.to\([\"'](cuda|mps)")
    offenders = [p.relative_to(ROOT).as_posix() for p in SOURCES if pattern.search(_code(p))]
    assert offenders == []


def test_widgets_use_only_api_common_to_ipywidgets_7_and_8():
    used = set()
    for path in SOURCES:
        code = _code(path)
        aliases = re.findall(r"import ipywidgets as (\w+)", code)
        for alias in aliases:
            used |= set(re.findall(rf"\b{alias}\.(\w+)", code))
        for names in re.findall(r"from ipywidgets import ([\w, ()]+)", code):
            used |= {n.strip(" ()") for n in names.split(",") if n.strip(" ()")}
    assert used, "the chapters have widgets: the scan should find them"
    assert used <= COMMON_WIDGETS, f"not in ipywidgets 7.7: {sorted(used - COMMON_WIDGETS)}"


def test_interact_draws_at_once_and_on_every_change(monkeypatch):
    """The widget shell calls the plain plotting function with the controls' values, then plt.show()."""
    from ipywidgets import Dropdown, IntSlider

    from diffusion_edu import widgets

    calls, shown = [], []
    monkeypatch.setattr(widgets.plt, "show", lambda: shown.append(True))
    t = IntSlider(value=3, min=0, max=9)
    box = widgets.interact(lambda t, schedule: calls.append((t, schedule)), t=t,
                           schedule=Dropdown(options=["linear", "cosine"]))
    t.value = 7
    box.children[0].children[1].value = "cosine"
    assert calls == [(3, "linear"), (7, "linear"), (7, "cosine")] and len(shown) == 3
