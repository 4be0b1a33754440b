"""The package's structure holds: no import cycle (an import anywhere in a module counts), the runtime never
imports the workshop (synthetic worlds, training), and no module grows past what one reader takes in."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "sa_convonet_ros"
WORKSHOP = ("sa_convonet_ros.synthetic", "sa_convonet_ros.training")
# What the node, the CLI and the reconstruction load; the demo and the benchmarks may use the workshop.
RUNTIME_ENTRY_POINTS = ("sa_convonet_ros.pipeline", "sa_convonet_ros.cli", "sa_convonet_ros.ros.node")
MAX_MODULE_LINES = 500


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in PACKAGE.rglob("*.py")}


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package's modules that `name` imports, at the top or inside functions alike."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        found |= {target for target in targets if target in known and target not in ("sa_convonet_ros", name)}
    return found


def import_graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(name, path, known) for name, path in known.items()}


def test_the_import_graph_is_read_from_the_code():
    graph = import_graph()
    assert "sa_convonet_ros.planning" in graph["sa_convonet_ros.pipeline"]
    assert "sa_convonet_ros.runners" in graph["sa_convonet_ros.ray_runner"]
    assert "sa_convonet_ros.synthetic.fields" in graph["sa_convonet_ros.synthetic.freeform"]  # `from . import`


def test_no_module_imports_itself_through_others():
    graph, cycles = import_graph(), []
    state: dict[str, str] = {}

    def visit(name: str, trail: list[str]) -> None:
        state[name] = "open"
        for target in sorted(graph[name]):
            if state.get(target) == "open":
                cycles.append(trail[trail.index(target):] + [target])
            elif target not in state:
                visit(target, trail + [target])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == []


def test_the_runtime_never_imports_the_workshop():
    graph = import_graph()
    reached, todo = set(), list(RUNTIME_ENTRY_POINTS)
    while todo:
        name = todo.pop()
        if name not in reached:
            reached.add(name)
            todo += graph[name]
    assert {name for name in reached if name.startswith(WORKSHOP)} == set()
    assert "sa_convonet_ros.devices" in reached and "sa_convonet_ros.ray_runner" in reached


def test_every_module_stays_readable_in_one_sitting():
    long = {name: n for name, path in modules().items() if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES}
    assert long == {}
