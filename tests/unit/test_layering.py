"""The layering rules of docs/ARCHITECTURE.md, checked on the source (an AST walk, lazy imports included).

* The package order, bottom to top: ground -> facts -> transports ->
  collectives -> analysis -> launch (-> benchmarks): a package imports only
  those below it, counting imports inside functions (a lazy import only
  hides a circle) and ``importlib.import_module("literal")``.
* No import circle among the project's modules.
* ``facts`` is pure: no MPI (and, by the order, no transport or runner).
* ``analysis`` imports no MPI, and of ``collectives`` only modules that reach
  no MPI and no transport.
* Every collective fact lives in ``facts/spec.py``: no busbw-factor function
  or table anywhere else.
* No module reaches into another's privates (``module._name``), tests included.
* No module over 500 lines.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Set

ROOT = Path(__file__).resolve().parents[2]
# The package order of docs/ARCHITECTURE.md, bottom to top; benchmarks/ (scripts) sit above them all.
ORDER = ("ground", "facts", "transports", "collectives", "analysis", "launch")
PACKAGES = ORDER
MPI = ("mpi4py", "mpich")
MAX_LINES = 500


def _modules() -> Dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            mods[name[: -len(".__init__")] if name.endswith(".__init__") else name] = path
    return mods


MODULES = _modules()


def _literal_import_module(node: ast.AST) -> str:
    """The module ``importlib.import_module("literal")`` (or a bare ``import_module(...)``) names, else ''."""
    if not (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)):
        return ""
    func = node.func
    called = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    return node.args[0].value if called == "import_module" and not node.args[0].value.startswith(".") else ""


def _raw_imports(name: str, path: Path) -> Set[str]:
    """Every module name an import statement, or an ``import_module`` of a literal, anywhere in the file names."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: Set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if _literal_import_module(node):
            out.add(_literal_import_module(node))
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join(parts + ([base] if base else []))
            for a in node.names:
                # ``from pkg import sub`` imports the submodule; ``from mod import name`` the module.
                full = f"{base}.{a.name}"
                out.add(full if full in MODULES else base)
    return out


def _internal(target: str, importer: str) -> str:
    """The project module an import resolves to ('' for third-party ones)."""
    while target and target not in MODULES:
        target = target.rpartition(".")[0]
    # A submodule naming its own package (``from collectives import __version__``):
    # the package is initialised before any of its submodules, so this is no edge.
    if target and importer.startswith(target + "."):
        return ""
    return target


GRAPH = {
    name: {t for t in map(lambda m: _internal(m, name), _raw_imports(name, path)) if t and t != name}
    for name, path in MODULES.items()
}


def _closure(start: str) -> Set[str]:
    seen, todo = set(), [start]
    while todo:
        m = todo.pop()
        for n in GRAPH[m]:
            if n not in seen:
                seen.add(n)
                todo.append(n)
    return seen


def _cycles() -> List[List[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on: Set[str] = set()
    found: List[List[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(GRAPH[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    return found


def test_the_walk_sees_the_project():
    assert {"collectives.harness", "facts.spec", "transports.mpi", "analysis.fit"} <= set(MODULES)
    assert "collectives.runner" in GRAPH["collectives.harness"]
    # A lazy import counts: transports' registry imports modules inside functions.
    assert "ground.dtypes" in GRAPH["transports"]


def test_import_module_of_a_literal_counts():
    tree = ast.parse('import importlib\nimportlib.import_module("analysis.fit")\nimport_module("ground.env")\n'
                     'importlib.import_module(name)\n')
    assert sorted(filter(None, map(_literal_import_module, ast.walk(tree)))) == ["analysis.fit", "ground.env"]


def _package_edges() -> Dict[tuple, List[str]]:
    """{(importer's package, imported package): ['module -> module', ...]} across packages."""
    edges: Dict[tuple, List[str]] = {}
    for name, targets in GRAPH.items():
        for t in sorted(targets):
            a, b = name.split(".")[0], t.split(".")[0]
            if a != b:
                edges.setdefault((a, b), []).append(f"{name} -> {t}")
    return edges


def test_every_import_points_down_the_package_order():
    up = {k: v for k, v in _package_edges().items() if ORDER.index(k[1]) > ORDER.index(k[0])}
    assert up == {}


def test_the_order_check_sees_an_upward_import(monkeypatch):
    monkeypatch.setitem(GRAPH, "facts.spec", GRAPH["facts.spec"] | {"collectives.harness"})
    assert ("facts", "collectives") in _package_edges()
    assert ORDER.index("collectives") > ORDER.index("facts")


def test_ground_imports_no_other_project_package():
    assert not [k for k in _package_edges() if k[0] == "ground"]


def test_benchmarks_are_the_top():
    # Nothing in a package imports a benchmark script.
    for name, path in MODULES.items():
        assert not [m for m in _raw_imports(name, path) if m.split(".")[0] == "benchmarks"], name


def test_no_import_circle():
    assert _cycles() == []


def _reaches_mpi(module: str) -> List[str]:
    return [m for m in _closure(module) | {module}
            if [r for r in _raw_imports(m, MODULES[m]) if r.split(".")[0] in MPI]]


def test_facts_are_pure():
    for name in MODULES:
        if name.split(".")[0] == "facts":
            assert _reaches_mpi(name) == [], name


def test_analysis_imports_no_mpi_and_no_transport():
    for name in MODULES:
        if name.split(".")[0] != "analysis":
            continue
        assert _reaches_mpi(name) == [], name
        assert not [m for m in _closure(name) if m.split(".")[0] in ("transports", "launch")], name


def _assigned_names(tree: ast.AST) -> Set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


def test_busbw_factors_live_only_in_spec():
    # Names and tables, not formulas: cost formulas legitimately contain (p-1)/p.
    offenders = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        if rel.parts[0] not in PACKAGES + ("benchmarks",) or rel == Path("facts/spec.py"):
            continue
        tree = ast.parse(path.read_text(), str(path))
        for name in _assigned_names(tree):
            low = name.lower().replace("_", "")
            if "busbwfactor" in low or "busfactor" in low:
                offenders.append(f"{rel}: {name}")
        for node in ast.walk(tree):  # a table: {"allreduce": ..., "broadcast": ...} with factor-like values
            if isinstance(node, ast.Dict):
                keys = {k.value for k in node.keys if isinstance(k, ast.Constant)}
                if {"allreduce", "allgather", "broadcast"} <= keys and all(
                        isinstance(v, (ast.BinOp, ast.Lambda, ast.Constant)) and not (
                            isinstance(v, ast.Constant) and isinstance(v.value, str)) for v in node.values):
                    offenders.append(f"{rel}:{node.lineno}: a per-collective numeric table")
    assert offenders == []


def test_no_collective_name_checks_outside_spec():
    # spec.py says what differs between collectives through fields, never by name.
    tree = ast.parse((ROOT / "facts" / "spec.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and isinstance(node.left, ast.Attribute) and node.left.attr == "name":
            raise AssertionError(f"facts/spec.py:{node.lineno} tests a collective's name")


def _module_names(path: Path, tree: ast.AST) -> Dict[str, str]:
    """Local names bound to a project module by an import anywhere in the file: {name: module}."""
    name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    package = name.rpartition(".")[0] if path.name != "__init__.py" else name[: -len(".__init__")]
    bound: Dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.asname and a.name in MODULES:
                    bound[a.asname] = a.name
                elif not a.asname and a.name.split(".")[0] in MODULES:
                    bound[a.name.split(".")[0]] = a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - (node.level - 1)] + ([base] if base else []))
            for a in node.names:
                if f"{base}.{a.name}" in MODULES:
                    bound[a.asname or a.name] = f"{base}.{a.name}"
    return bound


def _reach_ins(tree: ast.AST, bound: Dict[str, str]) -> List[ast.Attribute]:
    """``module._name`` accesses, ``module`` a name bound to a project module (dunders allowed)."""
    return [node for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in bound
            and node.attr.startswith("_") and not (node.attr.startswith("__") and node.attr.endswith("__"))]


def test_the_reach_in_walk_sees_one():
    tree = ast.parse("from analysis import fit\nimport ground.env as E\nfit._rows\nE._x\nfit.__name__\nself._y\n")
    bound = _module_names(ROOT / "analysis" / "report.py", tree)
    assert bound == {"fit": "analysis.fit", "E": "ground.env"}
    assert sorted(f"{n.value.id}.{n.attr}" for n in _reach_ins(tree, bound)) == ["E._x", "fit._rows"]


def _private_setattrs(tree: ast.AST, bound: Dict[str, str]) -> List[ast.Call]:
    """``monkeypatch.setattr(module, "_name", ...)`` (or ``setattr``): a test replacing a private."""
    out = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and len(node.args) >= 2 and isinstance(node.args[0], ast.Name)
                and node.args[0].id in bound and isinstance(node.args[1], ast.Constant)
                and isinstance(node.args[1].value, str) and node.args[1].value.startswith("_")
                and not node.args[1].value.startswith("__")
                and (getattr(node.func, "attr", None) or getattr(node.func, "id", None)) == "setattr"):
            out.append(node)
    return out


def test_the_setattr_walk_sees_one():
    tree = ast.parse('from analysis import fit\nmonkeypatch.setattr(fit, "_rows", 1)\nsetattr(fit, "rows", 1)\n')
    bound = _module_names(ROOT / "tests" / "unit" / "t.py", tree)
    assert [n.args[1].value for n in _private_setattrs(tree, bound)] == ["_rows"]


def test_no_module_reaches_into_another_modules_privates():
    # The packages, the benchmarks and the tests alike: a test uses what a module offers.
    offenders = []
    for path in sorted(ROOT.rglob("*.py")):
        if path.relative_to(ROOT).parts[0] in PACKAGES + ("benchmarks", "tests"):
            tree = ast.parse(path.read_text(), str(path))
            bound = _module_names(path, tree)
            offenders += [f"{path.relative_to(ROOT)}:{n.lineno}: {n.value.id}.{n.attr}"
                          for n in _reach_ins(tree, bound)]
            offenders += [f"{path.relative_to(ROOT)}:{n.lineno}: setattr({n.args[0].id}, {n.args[1].value!r})"
                          for n in _private_setattrs(tree, bound)]
    assert offenders == []


def test_no_module_over_500_lines():
    long = [f"{p.relative_to(ROOT)}: {n}" for p in sorted(ROOT.rglob("*.py"))
            if p.relative_to(ROOT).parts[0] in PACKAGES + ("benchmarks",)
            and (n := len(p.read_text().splitlines())) > MAX_LINES]
    assert long == []
