"""The package's import structure: no import cycle between files, and no import from a lower layer to a
higher one. The layers are listed, with the reason for their order, in docs/architectures.md (Code
layout and import layers); ``LAYERS`` below is that list.

Every ``import`` statement counts, at any depth: module level, inside functions (lazy imports) and
under ``TYPE_CHECKING``, because each is a dependency a reader has to follow.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "distillbev"

#: Lowest first. A module may import modules of its own layer and of the layers below it. A name is a
#: module or package below ``distillbev``; a module belongs to the layer of its longest listed prefix.
LAYERS: list[tuple[str, ...]] = [
    ("distillbev", "structures", "io", "paths", "config"),
    ("ops",),
    ("layers",),
    ("data",),
    ("models",),
    ("distill",),
    ("eval",),
    ("train",),
    ("experiments",),
    ("viz",),
    ("workflows", "export"),
    ("demo",),
    ("cli", "__main__"),
]


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package (``pkg/__init__.py`` is ``pkg``)."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def imported_modules(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package modules ``name`` imports (each import resolved to the deepest module file it names)."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the module's package, up level - 1 packages
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            # ``from pkg import sub`` imports the module ``pkg.sub``
            targets = [module] + [f"{module}.{a.name}" for a in node.names if f"{module}.{a.name}" in modules]
        else:
            continue
        for target in targets:
            if target != "distillbev" and not target.startswith("distillbev."):
                continue
            while target not in modules:
                target = target.rsplit(".", 1)[0]
            if target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = module_files()
    return {name: imported_modules(name, path, modules) for name, path in modules.items()}


def layer_of(module: str) -> int:
    """Index in ``LAYERS`` of the longest listed prefix of ``module``."""
    rel = module.split(".")[1:]  # without "distillbev"
    best, best_len = None, -1
    for i, names in enumerate(LAYERS):
        for prefix in names:
            parts = [] if prefix == "distillbev" else prefix.split(".")
            if rel[: len(parts)] == parts and len(parts) > best_len:
                best, best_len = i, len(parts)
    assert best is not None, f"{module} is in no layer of LAYERS: add it there and to docs/architectures.md"
    return best


def test_every_module_has_a_layer():
    for module in import_graph():
        layer_of(module)


def test_no_import_from_a_lower_layer_to_a_higher_one():
    upward = [
        f"{a} ({'/'.join(LAYERS[layer_of(a)])}) imports {b} ({'/'.join(LAYERS[layer_of(b)])})"
        for a, targets in import_graph().items()
        for b in sorted(targets)
        if layer_of(b) > layer_of(a)
    ]
    assert not upward, "imports against the layer order:\n" + "\n".join(upward)


def test_no_import_cycle_between_files():
    graph = import_graph()
    cycles, state = [], {}  # state: 1 = on the current path, 2 = done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(path[path.index(nxt) :] + [nxt]))
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_checker_sees_lazy_and_relative_imports(tmp_path):
    modules = {"distillbev.a": tmp_path / "a.py", "distillbev.b": tmp_path / "b.py", "distillbev": tmp_path}
    src = "def f():\n    from distillbev import b\n    from . import b as c\n"
    (tmp_path / "a.py").write_text(src)
    assert imported_modules("distillbev.a", tmp_path / "a.py", modules) == {"distillbev", "distillbev.b"}
    assert layer_of("distillbev.models.lss") == layer_of("distillbev.models")
    assert layer_of("distillbev.models") < layer_of("distillbev.train.loop")
    assert layer_of("distillbev.paths") == 0
