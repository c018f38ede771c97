"""The package's layer order, written down and enforced.

A module may import only from its own layer or a lower one. The table is LAYERS below;
the longest matching module-name prefix wins and every module under optbench/ must
match an entry.

The checker parses every module with `ast` (nothing is imported) and collects every
import of an optbench module: at module level, inside functions and methods, in class
bodies; relative imports resolved; `from optbench.x import y` counted as importing the
module optbench.x.y when that is a module; `importlib.import_module("optbench...")` and
`__import__("optbench...")` with a literal name; and a registry's lazy "optbench.mod:attr"
entry (imported on its first lookup, so a deferred import). Then:
  * no import points to a higher layer (each offender listed as file:line a -> b);
  * no import cycle between units, a unit being a top-level subpackage or module
    (optbench.referees, optbench.runner, ...) split where LAYERS splits it (optbench.models
    holds the architectures and, a layer up, the checkpoint loader and recipes);
  * no import cycle between modules of different layers;
  * no import cycle between modules (a package's __init__ is a module of its own), but
    for the deferred imports in DEFERRED_ALLOWED;
  * DEFERRED_ALLOWED stays short, respects the order and names edges that exist.
Cycles are Tarjan's strongly connected components. The checker lives here, not in the
package; test_checker_* plant violations in a fake package under tmp_path.
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "optbench"

# Lowest first: (name, module-name prefixes). One comment line per layer says what it holds.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    # 0 errors, seeds, cache and NUMBERS_VERSION, registries, metric declarations, results layout and the cell record, pure helpers, long-phase notices
    ("core", ("optbench.errors", "optbench.rng", "optbench.cache", "optbench.registry", "optbench.metrics",
              "optbench.storage", "optbench.record", "optbench.model_files", "optbench.text", "optbench.stats",
              "optbench.notices")),
    # 1 networks, the exact synthetic laws (gold) and their exact models, the Proxy wrapper; no domain lookup
    ("models", ("optbench.models.blocks", "optbench.models.nets", "optbench.models.gan", "optbench.models.diffusion", "optbench.models.vector",
                "optbench.models.fixed_batch", "optbench.models.exact", "optbench.gold", "optbench.proxies")),
    # 2 a domain's data and splits, and its model zoo: checkpoint manifests and loader, training recipes
    ("data", ("optbench.domains", "optbench.models")),
    # 3 pressure sources, referees (readouts, distribution metrics, their nulls), densities
    ("measurement", ("optbench.pressure", "optbench.referees", "optbench.density")),
    # 4 training and proxy replicates, detectors (they load replicates), suites, preflight, a run's plan and
    #   estimate, runner, workers, grids,
    #   the figures' model-derived inputs (computed at run time so the report reads files only),
    #   scoring outputs made elsewhere with a domain's referees and nulls
    ("run", ("optbench.training", "optbench.detectors", "optbench.detector_metrics", "optbench.suite",
             "optbench.preflight", "optbench.plan", "optbench.runner", "optbench.workers", "optbench.grids",
             "optbench.figure_inputs", "optbench.scoring", "optbench.refine")),
    # 5 summaries, figures, audits and tables written from a results folder
    ("report", ("optbench.report",)),
    # 6 products made from runs and reports: a model's card through the standard battery, leaderboards
    ("product", ("optbench.card",)),
    # 7 the command line
    ("interface", ("optbench.cli", "optbench.__main__")),
)

# Modules outside the order. optbench/__init__.py holds only __version__ and a PEP 562
# table of lazy names (strings resolved by importlib on attribute access, never at
# import): the package imports nothing of its own when loaded, so it is in no layer.
EXEMPT = {"optbench": "the package: __version__ and lazy re-exports of the public API only"}

# Deferred imports (function-level, or a registry's lazy entry) that may close a cycle
# between modules, with the cost each deferral saves. Each must respect the order.
# key: (importer, imported). Empty: no cycle is excused.
DEFERRED_ALLOWED: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Edge:
    file: str          # path relative to the root handed to the checker
    line: int
    importer: str
    imported: str
    deferred: bool     # inside a function/method body, or a lazy registry entry
    how: str = "import"

    def __str__(self) -> str:
        tag = "" if self.how == "import" and not self.deferred else \
            f" ({'deferred ' if self.deferred and self.how == 'import' else ''}{self.how})"
        return f"{self.file}:{self.line} {self.importer} -> {self.imported}{tag}"


# ---------------------------------------------------------------------------- collecting

def module_files(root: Path, package: str = PACKAGE) -> dict[str, Path]:
    """module name -> file, for every .py under root/package (an __init__ is the package)."""
    out = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


_LAZY = re.compile(r"([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*):[A-Za-z_][\w.]*")


class _Collector(ast.NodeVisitor):
    def __init__(self, name: str, is_package: bool, modules: set[str], package: str):
        self.name, self.modules, self.package = name, modules, package
        self.base = name if is_package else name.rpartition(".")[0]   # for relative imports
        self.depth = 0   # > 0 inside a function body
        self.found: list[tuple[int, str, bool, str]] = []

    def _owner(self, dotted: str) -> str | None:
        """The deepest optbench module that `dotted` names or lies in."""
        parts = dotted.split(".")
        while parts:
            cand = ".".join(parts)
            if cand in self.modules:
                return cand
            parts.pop()
        return None

    def _add(self, node, dotted: str, how: str = "import", deferred: bool | None = None):
        if dotted != self.package and not dotted.startswith(self.package + "."):
            return
        target = self._owner(dotted)
        if target is not None and target != self.name:
            self.found.append((node.lineno, target, self.depth > 0 if deferred is None else deferred, how))

    def _function(self, node):
        for d in node.decorator_list:   # decorators and defaults run at definition time
            self.visit(d)
        self.visit(node.args)
        if getattr(node, "returns", None) is not None:
            self.visit(node.returns)
        self.depth += 1
        for stmt in node.body:
            self.visit(stmt)
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = _function

    def visit_Lambda(self, node):
        self.visit(node.args)
        self.depth += 1
        self.visit(node.body)
        self.depth -= 1

    def visit_Import(self, node):
        for alias in node.names:
            self._add(node, alias.name)

    def visit_ImportFrom(self, node):
        if node.level:
            base = self.base.split(".")
            base = base[:len(base) - (node.level - 1)] if node.level > 1 else base
            mod = ".".join(base + ([node.module] if node.module else []))
        else:
            mod = node.module or ""
        for alias in node.names:
            sub = f"{mod}.{alias.name}"
            self._add(node, sub if sub in self.modules else mod)

    def visit_Call(self, node):
        f = node.func
        name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
        if name in ("import_module", "__import__") and node.args and \
                isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            self._add(node, node.args[0].value, how=name)
        self.generic_visit(node)

    def visit_Constant(self, node):
        # "optbench.domains.mnist:MNIST": a lazy registry entry, imported on first lookup
        if isinstance(node.value, str) and (m := _LAZY.fullmatch(node.value)):
            self._add(node, m.group(1), how="lazy entry", deferred=True)

    def visit_JoinedStr(self, node):
        # f"optbench.models.vector:{name}": the same, built in a loop
        first = node.values[0] if node.values else None
        if isinstance(first, ast.Constant) and isinstance(first.value, str) and \
                (m := re.fullmatch(r"([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*):[\w.]*", first.value)):
            self._add(node, m.group(1), how="lazy entry", deferred=True)
        self.generic_visit(node)


def collect_edges(root: Path, package: str = PACKAGE) -> tuple[dict[str, Path], list[Edge]]:
    files = module_files(root, package)
    modules = set(files)
    edges = []
    for name, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        c = _Collector(name, path.name == "__init__.py", modules, package)
        c.visit(tree)
        rel = path.relative_to(root).as_posix()
        edges += [Edge(rel, line, name, target, deferred, how) for line, target, deferred, how in c.found]
    return files, list(dict.fromkeys(edges))   # one edge per line and target


# ---------------------------------------------------------------------------- checking

def layer_of(module: str, layers=LAYERS) -> int | None:
    best, best_len = None, -1
    for i, (_, prefixes) in enumerate(layers):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best_len:
                best, best_len = i, len(p)
    return best


def unit_key(modules, layers=LAYERS):
    """module -> its unit: the top-level subpackage or module ("optbench.referees"), with
    the layer's name appended where the table puts the unit's modules in several layers
    ("optbench.models[models]", "optbench.models[data]")."""
    def top(m: str) -> str:
        return ".".join(m.split(".")[:2])
    spans: dict[str, set] = {}
    for m in modules:
        spans.setdefault(top(m), set()).add(layer_of(m, layers))

    def key(m: str) -> str:
        u = top(m)
        return f"{u}[{layers[layer_of(m, layers)][0]}]" if len(spans.get(u, ())) > 1 else u
    return key


def upward_edges(edges, layers=LAYERS, exempt=EXEMPT) -> list[Edge]:
    bad = []
    for e in edges:
        if e.importer in exempt or e.imported in exempt:
            continue
        a, b = layer_of(e.importer, layers), layer_of(e.imported, layers)
        if a is not None and b is not None and b > a:
            bad.append(e)
    return bad


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components (iterative); only the cycles (two or more
    nodes), each sorted, in sorted order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        index[start] = low[start] = len(index)
        stack.append(start)
        on.add(start)
        work = [(start, iter(sorted(graph.get(start, ()))))]
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return sorted(out)


def graph_of(edges, key=lambda m: m, exempt=EXEMPT, skip=()) -> dict[str, set[str]]:
    """importer -> imported, with nodes mapped by `key`; edges in `skip` (pairs of
    module names) and those of exempt modules left out."""
    g: dict[str, set[str]] = {}
    for e in edges:
        if e.importer in exempt or e.imported in exempt or (e.importer, e.imported) in skip:
            continue
        a, b = key(e.importer), key(e.imported)
        if a != b:
            g.setdefault(a, set()).add(b)
            g.setdefault(b, set())
    return g


def describe_cycles(cycles, edges, key=lambda m: m, skip=()) -> str:
    lines = []
    for comp in cycles:
        members = set(comp)
        lines.append("cycle: " + ", ".join(comp))
        lines += [f"    {e}" for e in edges
                  if key(e.importer) in members and key(e.imported) in members
                  and key(e.importer) != key(e.imported) and (e.importer, e.imported) not in skip]
    return "\n".join(lines)


def cross_layer_cycles(edges, layers=LAYERS, exempt=EXEMPT, skip=()) -> list[list[str]]:
    return [c for c in strongly_connected(graph_of(edges, exempt=exempt, skip=skip))
            if len({layer_of(m, layers) for m in c}) > 1]


def list_problems(edges, listed, layers=LAYERS, exempt=EXEMPT, deferred_only=False) -> list[str]:
    """What is wrong with an allow-list of (importer, imported) edges: an entry whose edge
    does not exist (or, with deferred_only, is not deferred), points to a higher layer,
    or closes no cycle (its two ends are not in one cycle of the full module graph)."""
    cycles = strongly_connected(graph_of(edges, exempt=exempt))
    problems = []
    for a, b in listed:
        found = [e for e in edges if (e.importer, e.imported) == (a, b)]
        if not found or (deferred_only and not all(e.deferred for e in found)):
            problems.append(f"{a} -> {b}: no such {'deferred ' if deferred_only else ''}import")
        elif upward_edges(found, layers, exempt):
            problems.append(f"{a} -> {b}: points to a higher layer; an allow-list never excuses that")
        elif not any(a in c and b in c for c in cycles):
            problems.append(f"{a} -> {b}: closes no cycle any more; remove the entry")
    return problems


# ---------------------------------------------------------------------------- the package

FILES, EDGES = collect_edges(ROOT)
UNIT = unit_key(FILES)
ALLOWED = set(DEFERRED_ALLOWED)


def test_every_module_has_a_layer():
    missing = [m for m in FILES if m not in EXEMPT and layer_of(m) is None]
    assert not missing, "modules missing from LAYERS (add them to the table): " + ", ".join(missing)


def test_no_import_points_to_a_higher_layer():
    bad = upward_edges(EDGES)
    assert not bad, "imports of a higher layer (move the code to the right layer):\n" + "\n".join(
        f"  {e}   [{LAYERS[layer_of(e.importer)][0]} -> {LAYERS[layer_of(e.imported)][0]}]" for e in bad)


def test_no_cycle_between_units():
    cycles = strongly_connected(graph_of(EDGES, key=UNIT))
    assert not cycles, "import cycles between units:\n" + describe_cycles(cycles, EDGES, UNIT)


def test_no_cycle_between_layers():
    cycles = cross_layer_cycles(EDGES)
    assert not cycles, "import cycles across layers:\n" + describe_cycles(cycles, EDGES)


def test_no_cycle_between_modules():
    cycles = strongly_connected(graph_of(EDGES, skip=ALLOWED))
    assert not cycles, ("import cycles between modules (break them; a deferred import closing one "
                        "needs an entry in DEFERRED_ALLOWED):\n" + describe_cycles(cycles, EDGES, skip=ALLOWED))


def test_allow_lists_are_short_exist_and_respect_the_order():
    assert len(DEFERRED_ALLOWED) <= 3, "the allow-list is meant to stay short"
    problems = list_problems(EDGES, DEFERRED_ALLOWED, deferred_only=True)
    assert not problems, "\n".join(problems)


def test_the_checker_sees_the_package():
    """A floor under the collector: it found the modules, and imports of every kind."""
    assert {"optbench.runner", "optbench.referees", "optbench.models.nets"} <= set(FILES)
    assert len(EDGES) > 200
    kinds = {(e.deferred, e.how) for e in EDGES}
    assert {(False, "import"), (True, "import"), (True, "lazy entry")} <= kinds
    assert UNIT("optbench.models.nets") != UNIT("optbench.models.checkpoints")
    assert UNIT("optbench.referees.null") == "optbench.referees"


# ---------------------------------------------------------------------------- the checker

def _fake_package(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


FAKE_LAYERS = (("low", ("fake.low",)), ("high", ("fake.high",)))


def test_checker_reports_a_deferred_back_import(tmp_path):
    """A low-layer module importing a high-layer one inside a method is reported, with
    the cycle it closes between layers and between units; an allow-list does not excuse it."""
    _fake_package(tmp_path, {
        "fake/__init__.py": "",
        "fake/low/__init__.py": "",
        "fake/low/util.py": "import os\n\n\nclass C:\n    def m(self):\n"
                            "        from fake.high import app\n        return app\n",
        "fake/high/__init__.py": "",
        "fake/high/app.py": "from fake.low.util import C\n",
    })
    files, edges = collect_edges(tmp_path, "fake")
    bad = upward_edges(edges, FAKE_LAYERS, exempt={})
    assert [str(e) for e in bad] == ["fake/low/util.py:6 fake.low.util -> fake.high.app (deferred import)"]
    assert cross_layer_cycles(edges, FAKE_LAYERS, exempt={}) == [["fake.high.app", "fake.low.util"]]
    units = strongly_connected(graph_of(edges, key=unit_key(files, FAKE_LAYERS), exempt={}))
    assert units == [["fake.high", "fake.low"]]
    listed = {("fake.low.util", "fake.high.app"): "for start-up cost"}
    assert list_problems(edges, listed, FAKE_LAYERS, exempt={}, deferred_only=True) == [
        "fake.low.util -> fake.high.app: points to a higher layer; an allow-list never excuses that"]


def test_checker_resolves_relative_dynamic_and_lazy_imports(tmp_path):
    _fake_package(tmp_path, {
        "fake/__init__.py": "",
        "fake/low/__init__.py": "from . import a\n",
        "fake/low/a.py": "from ..high import b as _b\n",
        "fake/low/c.py": "import importlib\nX = importlib.import_module('fake.high.b')\n",
        "fake/low/d.py": "REG = {'b': 'fake.high.b:thing'}\nfor n in 'xy':\n    REG[n] = f'fake.high.b:{n}'\n",
        "fake/low/e.py": "class K:\n    from fake.high.b import thing\n",
        "fake/low/f.py": "import fake.high\n",
        "fake/high/__init__.py": "",
        "fake/high/b.py": "from .. import low\n",
    })
    _, edges = collect_edges(tmp_path, "fake")
    got = {(e.importer, e.imported, e.line, e.deferred, e.how) for e in edges}
    assert got == {("fake.low", "fake.low.a", 1, False, "import"),
                   ("fake.low.a", "fake.high.b", 1, False, "import"),
                   ("fake.low.c", "fake.high.b", 2, False, "import_module"),
                   ("fake.low.d", "fake.high.b", 1, True, "lazy entry"),
                   ("fake.low.d", "fake.high.b", 3, True, "lazy entry"),
                   ("fake.low.e", "fake.high.b", 2, False, "import"),   # a class body runs at import
                   ("fake.low.f", "fake.high", 1, False, "import"),
                   ("fake.high.b", "fake.low", 1, False, "import")}
    assert len(upward_edges(edges, FAKE_LAYERS, exempt={})) == 6
    assert strongly_connected(graph_of(edges, exempt={})) == [["fake.high.b", "fake.low", "fake.low.a"]]
