"""Dependencies run one way: every import in the code (lazy ones inside functions included)
goes to the module's own package or to a lower layer, and no two modules import each other,
directly or round a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# lowest first; packages on one layer do not import each other
LAYERS = [
    ("vitrine",),
    ("retrieval", "ranking"),
    ("spark_jobs", "training"),
    ("serving",),
    ("evaluation",),
    ("app",),
]
RANK = {package: i for i, packages in enumerate(LAYERS) for package in packages}


def imports() -> dict[str, set[str]]:
    """module → the project modules it imports (anywhere in the file)."""
    found: dict[str, set[str]] = {}
    for package in RANK:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "proto" in path.parts and path.name.endswith(("_pb2.py", "_pb2_grpc.py")):
                continue
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            targets = set()
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    targets.update(a.name for a in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    targets.add(node.module)
                    targets.update(f"{node.module}.{a.name}" for a in node.names)
            found[module] = {t for t in targets if t.split(".")[0] in RANK}
    return found


def test_no_package_imports_one_above_it_or_beside_it():
    upward = []
    for module, targets in imports().items():
        own = module.split(".")[0]
        for target in targets:
            other = target.split(".")[0]
            if other != own and RANK[other] >= RANK[own]:
                upward.append(f"{module} imports {target} ({other} is not below {own})")
    assert not upward, "\n".join(sorted(upward))


def test_no_import_cycles_between_modules():
    graph = imports()
    modules = set(graph)
    edges = {m: {t for t in ts if t in modules and t != m} for m, ts in graph.items()}
    cycles, state = [], {}

    def visit(m: str, stack: list[str]) -> None:
        state[m] = "open"
        for t in sorted(edges[m]):
            if state.get(t) == "open":
                cycles.append(" → ".join([*stack[stack.index(t):], t]))
            elif t not in state:
                visit(t, [*stack, t])
        state[m] = "done"

    for m in sorted(modules):
        if m not in state:
            visit(m, [m])
    assert not cycles, "\n".join(cycles)
