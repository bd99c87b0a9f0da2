#!/usr/bin/env python3
"""The server's import graph by layer, and a check that it points one way.

    python3 scripts/layers.py          # the graph; exits 1 on an upward edge or a cycle
    python3 scripts/layers.py --dot    # the same graph for Graphviz

Each `crate::<module>` path in a module's code (unit tests at the end of a
file aside) is an edge from the module's top-level module to the one named.
A layer may use only the layers below it; the foundation modules may use each
other, but never in a circle. The layers, top to bottom, are the table in
src/lib.rs.
"""

import pathlib
import re
import sys

LAYERS = [
    ("commands", ["django"]),
    ("network", ["net"]),
    ("edges", ["api", "ws"]),
    ("node", ["app"]),
    ("input", ["input"]),
    ("http", ["http"]),
    ("delivery", ["delivery"]),
    ("caches", ["cache"]),
    ("storage", ["store"]),
    ("auth", ["auth"]),
    ("foundation", ["config", "model", "json", "digest", "metrics", "tls_files", "ratelimit",
                    "remembered", "shutdown", "telemetry", "allocator", "fast_maps"]),
]
# Test-only modules, compiled into the test build alone.
TEST_ONLY = {"fuzz_tests"}

ROOT = pathlib.Path(__file__).resolve().parent.parent / "src"
RANK = {module: rank for rank, (_, modules) in enumerate(LAYERS) for module in modules}
LAYER = {module: name for name, modules in LAYERS for module in modules}
PATH = re.compile(r"\bcrate::([a-z_]+)")
SUBPATH = re.compile(r"\bcrate::([a-z_]+)::([a-z_]+)")
SUPER = re.compile(r"\bsuper::([a-z_]+)")
GROUP = re.compile(r"\bcrate::\{([^}]*)\}")


def crate_modules(code):
    """Every top-level module a file names: `crate::a::...`, and each
    `a` of `crate::{a::x, b}`."""
    names = PATH.findall(code)
    for group in GROUP.findall(code):
        names += re.findall(r"(?:^|,)\s*([a-z_]+)", group)
    return names


def top_module(path):
    parts = path.relative_to(ROOT).with_suffix("").parts
    return parts[0]


def code_of(path):
    """The file's text without its trailing unit tests and comments."""
    text = path.read_text()
    cut = re.search(r"^#\[cfg\(test\)\]\s*\nmod tests", text, re.M)
    if cut:
        text = text[: cut.start()]
    return re.sub(r"//.*", "", text)


def module_edges():
    edges = {}
    for path in sorted(ROOT.rglob("*.rs")):
        source = top_module(path)
        if source in ("lib", "main") or source in TEST_ONLY:
            continue
        for target in crate_modules(code_of(path)):
            if target != source and target not in TEST_ONLY:
                edges.setdefault(source, set()).add(target)
    return edges


def unit_of(path):
    """`folder::file` for a file two levels down (`delivery::rooms` for
    src/delivery/rooms/shard.rs), else its top-level module."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    if len(parts) >= 2 and parts[1] != "mod":
        return f"{parts[0]}::{parts[1]}"
    return parts[0]


def unit_edges():
    """Edges between the modules one level inside each top-level module,
    so a circle inside a layer (say, the bus and the rooms) shows too."""
    edges = {}
    for path in sorted(ROOT.rglob("*.rs")):
        source = unit_of(path)
        if "::" not in source:
            continue
        code = code_of(path)
        targets = {f"{a}::{b}" for a, b in SUBPATH.findall(code)}
        parts = path.relative_to(ROOT).with_suffix("").parts
        if len(parts) == 2:  # src/a/b.rs: super:: is a
            targets |= {f"{parts[0]}::{name}" for name in SUPER.findall(code)}
        for target in targets:
            if target != source and target.split("::")[0] == source.split("::")[0]:
                edges.setdefault(source, set()).add(target)
    return edges


def cycle(edges):
    """One circle in the module graph, or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(edges):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def main():
    edges = module_edges()
    problems = []
    named = set(edges) | {t for targets in edges.values() for t in targets}
    unknown = sorted(named - set(RANK))
    problems += [f"module {m} is in no layer (add it to LAYERS and src/lib.rs)" for m in unknown]
    layer_edges = {}
    for source, targets in edges.items():
        for target in targets:
            if source not in RANK or target not in RANK:
                continue
            up = RANK[target] < RANK[source]
            sideways = RANK[target] == RANK[source] and LAYER[source] != "foundation"
            if up or sideways:
                problems.append(f"{source} ({LAYER[source]}) uses {target} ({LAYER[target]})")
            if LAYER[source] != LAYER[target]:
                layer_edges.setdefault(LAYER[source], set()).add(LAYER[target])
    for graph in (edges, unit_edges()):
        circle = cycle(graph)
        if circle:
            problems.append("circle: " + " -> ".join(circle))
    if "--dot" in sys.argv:
        print("digraph layers {")
        for source, targets in sorted(edges.items()):
            for target in sorted(targets):
                print(f'  "{source}" -> "{target}";')
        print("}")
    else:
        for name, modules in LAYERS:
            used = sorted(layer_edges.get(name, ()), key=lambda l: [n for n, _ in LAYERS].index(l))
            print(f"{name:<11} {' '.join(modules):<24} uses: {', '.join(used) or '-'}")
        print()
        for source in sorted(edges, key=lambda m: (RANK.get(m, 99), m)):
            print(f"  {source} -> {', '.join(sorted(edges[source]))}")
    for problem in problems:
        print("error:", problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
