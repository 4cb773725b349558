"""The layout is the architecture: core's imports flow one way, down the layers, with no cycle.

A layer may import its own modules and any layer below it, never one above: the contract knows
nothing of the client, the client nothing of the domain, backends nothing of the router... The
generic store (everything below ``domain``: contract, kit, client, composed, plugins, ops) never
imports the buyer agent's domain: a domain is a client of the store.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

CORE = Path(__file__).resolve().parents[1] / "packages/ad_buyer_storage_core/src/ad_buyer_storage"

# Lowest first. Modules directly in the package (errors, sync) are listed by name.
LAYERS = [
    {"errors"},
    {"contract"},
    {"kit"},
    {"client", "backends"},
    {"composed"},
    {"plugins"},
    {"ops"},
    {"domain"},
    {"cli", "sync", "otel"},
    {"testing"},
]


def _layer(module: str) -> int:
    top = module.split(".")[1] if module.count(".") else module
    for rank, names in enumerate(LAYERS):
        if top in names:
            return rank
    raise AssertionError(f"{module} belongs to no layer: add it to LAYERS")


def _modules() -> dict[str, Path]:
    found = {}
    for path in CORE.rglob("*.py"):
        relative = path.relative_to(CORE.parent).with_suffix("")
        parts = list(relative.parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imports(path: Path, module: str) -> set[str]:
    """Every ad_buyer_storage module *module* imports (relative imports resolved)."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                targets = [f"{base}.{node.module}"] if node.module else [f"{base}.{a.name}" for a in node.names]
            else:
                targets = [node.module or ""]
            found.update(t for t in targets if t.startswith("ad_buyer_storage.") or t == "ad_buyer_storage")
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("ad_buyer_storage."))
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = defaultdict(set)
    for module, path in modules.items():
        if module == "ad_buyer_storage":
            continue  # the public names, loaded lazily from every layer: the top of it all
        for target in _imports(path, module):
            # `from ad_buyer_storage.x import name` may name a module or an attribute of x.
            graph[module].add(target if target in modules else target.rsplit(".", 1)[0])
    return graph


def test_imports_flow_down_the_layers() -> None:
    upward = [
        f"{module} ({LAYERS[_layer(module)]}) imports {target} ({LAYERS[_layer(target)]})"
        for module, targets in _graph().items()
        for target in targets
        if target != "ad_buyer_storage" and _layer(target) > _layer(module)
    ]
    assert not upward, "imports that go up a layer:\n" + "\n".join(upward)


def test_no_module_imports_the_package_root() -> None:
    """``from ad_buyer_storage import X`` inside core would load the lazy public list: a hidden cycle."""
    offenders = [m for m, targets in _graph().items() if "ad_buyer_storage" in targets]
    assert not offenders, offenders


def test_there_is_no_import_cycle() -> None:
    graph = _graph()
    state: dict[str, int] = {}  # 1 visiting, 2 done
    cycles: list[list[str]] = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target] if target in path else [module, target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, cycles[:5]


def test_the_generic_store_never_loads_the_domain() -> None:
    """``open_store``/``get_store`` (and the locks built on a store) run without the domain."""
    code = (
        "import asyncio, sys\n"
        "from ad_buyer_storage import open_store, get_store, close_store, LeaseLock, Store, StoreAPI\n"
        "async def main():\n"
        "    async with open_store('memory') as store:\n"
        "        assert type(store) is Store and isinstance(store, StoreAPI)\n"
        "        await store.set('k', 1)\n"
        "        async with LeaseLock(store, 'x', ttl=5):\n"
        "            assert await store.get('k') == 1\n"
        "    shared = await get_store()\n"
        "    assert shared is await get_store()\n"
        "    await close_store()\n"
        "asyncio.run(main())\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('ad_buyer_storage.domain'))\n"
        "assert not loaded, loaded\n"
    )
    env = {**os.environ, "STORAGE_TYPE": "memory"}  # get_store(): the settings choose
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 0, run.stderr
