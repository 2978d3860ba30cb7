"""The package layout is a rule, not a habit: web → guards → services → upstream → store.

Parses every module of `gateway/` (no import side effects) and checks that no module
imports a package of a higher layer, and that the packages' import graph has no cycle.
`errors`, `context` and `policy` (a pure model of the policy files) are shared by every
layer; `cli` and the app factory sit on top and may import anything.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

GATEWAY = pathlib.Path(__file__).resolve().parents[2] / "gateway"

#: higher number = higher layer; a module may import its own layer or lower ones
LAYERS = {
    "cli": 6, "__init__": 6,
    "web": 5,
    "guards": 4,
    "services": 3,
    "upstream": 2, "observability": 2,
    "store": 1,
    "policy": 0, "errors": 0, "context": 0, "settings": 0,
}


def _package(module: str) -> str:
    """`gateway.web.partner` -> `web`; `gateway` -> `__init__`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _modules() -> dict[str, pathlib.Path]:
    found = {}
    for path in GATEWAY.rglob("*.py"):
        rel = path.relative_to(GATEWAY.parent).with_suffix("")
        name = ".".join(p for p in rel.parts if p != "__init__")
        found[name] = path
    return found


def _imports(path: pathlib.Path) -> set[str]:
    """Every `gateway.*` module a file imports, at any depth (lazy imports included)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("gateway")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("gateway"):
            if node.module == "gateway":
                out |= {f"gateway.{a.name}" for a in node.names}
            else:
                out.add(node.module)
    return out


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, path in _modules().items():
        source = _package(name)
        for target in _imports(path):
            dest = _package(target)
            if dest != source and dest not in ("create_app",):
                graph.setdefault(source, set()).add(dest)
    return graph


def test_every_package_has_a_layer() -> None:
    assert {_package(m) for m in _modules()} <= set(LAYERS)


@pytest.mark.parametrize("name", sorted(_modules()))
def test_no_module_imports_a_higher_layer(name: str) -> None:
    own = LAYERS[_package(name)]
    if _package(name) in ("cli", "__init__"):
        return
    higher = sorted(t for t in _imports(_modules()[name])
                    if _package(t) in LAYERS and LAYERS[_package(t)] > own)
    assert not higher, f"{name} (layer {own}) imports a higher layer: {higher}"


def test_the_package_graph_has_no_cycle() -> None:
    graph = _graph()
    graph.pop("__init__", None)
    seen: set[str] = set()
    stack: list[str] = []

    def visit(node: str) -> None:
        if node in stack:
            raise AssertionError(f"import cycle: {' -> '.join(stack[stack.index(node):] + [node])}")
        if node in seen:
            return
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt != "__init__":
                visit(nxt)
        stack.pop()
        seen.add(node)

    for start in sorted(graph):
        visit(start)
