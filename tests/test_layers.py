"""The package's layers hold: no module imports one above it, and no import goes round in a
cycle (imports inside functions count: a lazy import is still a dependency).

From the bottom: the vocabulary (errors, models, dates, folding, the schema, the settings),
the store, mail delivery and composition, the domain (one module per job), rendering, the
commands, and the CLI that registers them. A new module is placed in a layer here, or the
test fails and says so.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "velory_cli"

LAYERS: list[tuple[str, set[str]]] = [
    (
        "vocabulary",
        {"__init__", "__main__", "errors", "models", "dates", "folding", "migrations", "wording"},
    ),
    ("settings", {"config"}),
    ("store", {"store", "outputs"}),
    ("mail", {"mailer", "mails", "smtpclient"}),
    (
        "domain",
        {
            "lifecycle",
            "inventory",
            "nearest",
            "renewals",
            "stats",
            "notices",
            "maintenance",
            "importer",
            "demo",
            "mdm",
            "digest",
        },
    ),
    ("render", {"render"}),
    ("commands", {"commands"}),
    ("cli", {"cli"}),
]

# python -m velory_cli is the CLI's own entry point.
ALLOWED_UPWARD = {("__main__", "cli")}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path, module: str) -> set[str]:
    found: set[str] = set()
    package = module.split(".")[:-1] if path.name != "__init__.py" else module.split(".")
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
                found.add(target)
            elif node.module == "velory_cli":
                found.update(alias.name for alias in node.names)
            elif node.module and node.module.startswith("velory_cli."):
                found.add(node.module.removeprefix("velory_cli."))
        elif isinstance(node, ast.Import):
            found.update(
                alias.name.removeprefix("velory_cli.")
                for alias in node.names
                if alias.name.startswith("velory_cli.")
            )
    found.discard("__version__")
    found.discard(module)
    return found


def _graph() -> dict[str, set[str]]:
    graph = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        graph[module] = _imports(path, module)
    return graph


def _layer(module: str) -> int:
    top = module.split(".")[0]
    for index, (_, members) in enumerate(LAYERS):
        if top in members:
            return index
    raise AssertionError(f"velory_cli.{module} is in no layer: place it in tests/test_layers.py")


def test_every_module_is_in_a_layer() -> None:
    for module in _graph():
        _layer(module)


def test_no_module_imports_one_above_it() -> None:
    upward = [
        f"{module} ({LAYERS[_layer(module)][0]}) imports {target} ({LAYERS[_layer(target)][0]})"
        for module, targets in _graph().items()
        for target in targets
        if _layer(target) > _layer(module) and (module, target) not in ALLOWED_UPWARD
    ]
    assert upward == []


def test_no_import_cycles() -> None:
    graph = _graph()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(module: str, trail: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph.get(module, ())):
            if target not in graph:
                continue
            if state.get(target) == 1:
                cycles.append([*trail[trail.index(target) :], target])
            elif target not in state:
                visit(target, [*trail, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_the_graph_sees_imports() -> None:
    # A check that cannot fail is no check: the graph must know the CLI imports the commands.
    graph = _graph()
    assert "errors" in graph["cli"]
    assert any(target.startswith("store") for target in graph["lifecycle"])
