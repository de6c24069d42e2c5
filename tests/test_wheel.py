"""Colab readiness: a wheel built from the repository carries the weights and runs a chapter outside the checkout.

Colab already has every dependency, so the fresh virtual environment gets them from this one (a .pth file
pointing at our site-packages plays Colab's preinstalled packages) and the wheel is installed with --no-deps.
"""
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
                   check=True, capture_output=True)
    return next(out.glob("diffusion_edu-*.whl"))


def test_wheel_contains_the_package_and_its_weights(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for module in ("__init__", "samplers/__init__", "samplers/discrete", "processes", "nets/unet", "data/images",
                   "pretrained", "checks/__init__", "checks/ch01", "course/grade"):
        assert f"diffusion_edu/{module}.py" in names
    assert "diffusion_edu/weights/manifest.json" in names
    from diffusion_edu import pretrained

    for name in pretrained.available():
        assert f"diffusion_edu/weights/{name}.pt" in names


def test_a_chapter_runs_from_the_installed_wheel_outside_the_checkout(wheel, tmp_path):
    env_dir = tmp_path / "colab"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "preinstalled.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # torch, numpy, jupyter, …
    subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, capture_output=True)
    work = tmp_path / "elsewhere"
    work.mkdir()
    found = subprocess.run([str(python), "-c", "import diffusion_edu; print(diffusion_edu.__file__)"], cwd=work,
                           capture_output=True, text=True, check=True).stdout
    assert found.startswith(str(site)), f"imported {found} instead of the installed wheel"
    notebook = work / "01_forward_process.ipynb"
    nb = nbformat.read(ROOT / "notebooks" / "01_forward_process.ipynb", as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("import diffusion_edu\nprint('FROM', diffusion_edu.__file__)"))
    nbformat.write(nb, notebook)
    run = subprocess.run([str(python), "-m", "nbconvert", "--to", "notebook", "--execute", "--inplace", str(notebook)],
                         cwd=work, capture_output=True, text=True, env={"DIFFUSION_EDU_FAST": "1", "PATH": "/usr/bin:/bin",
                                                                        "HOME": str(tmp_path), "OMP_NUM_THREADS": "1",
                                                                        "MPLBACKEND": "Agg"})
    assert run.returncode == 0, run.stderr[-3000:]
    executed = nbformat.read(notebook, as_version=4)
    assert not [o for c in executed.cells for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert f"FROM {site}" in "".join(o.get("text", "") for o in executed.cells[-1].outputs), "kernel used another install"


# What a learner's notebook may import: the standard library, the package's declared dependencies (as import
# names), IPython (which every Jupyter kernel brings) and diffusion_edu itself.
IMPORT_NAMES = {"torch": "torch", "numpy": "numpy", "matplotlib": "matplotlib", "ipywidgets": "ipywidgets",
                "tqdm": "tqdm", "scikit-learn": "sklearn", "scipy": "scipy"}


def _imports(path: Path) -> set[str]:
    """Dotted names of every module a notebook's code cells import (magics and shell lines skipped)."""
    import ast

    names = set()
    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type != "code":
            continue
        code = "\n".join(line for line in cell.source.splitlines() if not line.lstrip().startswith(("%", "!")))
        for node in ast.walk(ast.parse(code)):
            if isinstance(node, ast.Import):
                names |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module)
    return names


def test_every_notebook_imports_only_what_the_wheel_and_its_dependencies_provide(wheel):
    import tomllib

    from diffusion_edu.course import authoring

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    allowed = set(sys.stdlib_module_names) | {"IPython", "diffusion_edu"}
    for requirement in declared:
        name = requirement.split(">")[0].split("=")[0].split("<")[0].strip()
        allowed.add(IMPORT_NAMES[name])  # a new dependency needs its import name here
    in_wheel = set(zipfile.ZipFile(wheel).namelist())
    for path in authoring.notebooks(ROOT):
        for module in _imports(path):
            assert module.split(".")[0] in allowed, f"{path.name} imports {module}, which is not a dependency"
            if module.startswith("diffusion_edu."):
                as_file = module.replace(".", "/")
                assert {f"{as_file}.py", f"{as_file}/__init__.py"} & in_wheel, f"{path.name}: {module} not in the wheel"
