"""The package's layout: the mathematics never imports the tooling, no import cycles, files stay small."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "diffusion_edu"
MODULES = sorted(p for p in PACKAGE.rglob("*.py"))
MAX_LINES = 400  # the aim is ~300 lines a file (STYLE.md); this cap stops a file from quietly growing into two


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, top_level_only: bool = False) -> set[str]:
    """The diffusion_edu modules ``path`` imports (relative imports resolved), at module level or anywhere."""
    tree = ast.parse(path.read_text())
    here = module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            base = (package[: len(package) - node.level + 1] if node.level else []) + (node.module or "").split(".")
            base = [b for b in base if b]
            if base and base[0] == "diffusion_edu":
                found.add(".".join(base))
                found.update(".".join(base + [a.name]) for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("diffusion_edu"))
    known = {module_name(p) for p in MODULES}
    return {m for m in found if m in known}


@pytest.mark.parametrize("path", [p for p in MODULES if "course" not in p.parts and p.name != "__main__.py"],
                         ids=module_name)  # __main__ is the command line: tooling
def test_the_mathematics_never_imports_the_tooling(path):
    assert not any(m.startswith("diffusion_edu.course") for m in imports(path)), imports(path)


def test_no_import_cycles_at_module_level():
    graph = {module_name(p): imports(p, top_level_only=True) - {module_name(p)} for p in MODULES}
    state = {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in graph.get(node, ()):
            if nxt.startswith(node + ".") or node.startswith(nxt + "."):
                continue  # a package and its own submodules (re-exports) are not a cycle
            if state.get(nxt) == "open":
                raise AssertionError(" → ".join(stack + [node, nxt]))
            if nxt not in state:
                visit(nxt, stack + [node])
        state[node] = "done"

    for node in graph:
        if node not in state:
            visit(node, [])


def test_the_package_never_reaches_into_tests():
    for path in MODULES:
        text = path.read_text()
        assert "sys.path.insert" not in text and "import test_" not in text, path


@pytest.mark.parametrize("path", MODULES, ids=module_name)
def test_files_stay_small(path):
    assert len(path.read_text().splitlines()) <= MAX_LINES
