#!/usr/bin/env python3
"""Prints the import cycles among the modules of src/ (one module per file) and exits 1 if any.

A module imports another when it names it by path: `crate::a::b`, `super::x`, `self::y` or a
child module by its bare name (`pages::overview`), in `use` items or inline, unit tests left
out. A `pub use` re-export counts as an import of the
module it re-exports from, so a parent that re-exports its children and children that import
their parent's items form a cycle.

    scripts/module-cycles.py                        # the cycles; exit 1 if any
    scripts/module-cycles.py --edges                # every import edge too
    scripts/module-cycles.py --allow-within engine  # a cycle wholly inside engine/ is known
"""
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")


def module_of(path):
    rel = os.path.relpath(path, ROOT)[:-3].split(os.sep)
    if rel[-1] in ("mod", "lib", "main"):
        rel = rel[:-1]
    return tuple(rel)


def files():
    for dirpath, _, names in os.walk(ROOT):
        for name in names:
            if name.endswith(".rs"):
                yield os.path.join(dirpath, name)


PATH = re.compile(r"\b(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")
BARE = re.compile(r"(?<![\w:])([a-z_][a-z0-9_]*)::")
GROUP = re.compile(r"\b(crate|super|self)::\{([^;]*?)\};", re.S)


def strip_comments(text):
    text = re.sub(r"//[^\n]*", "", text)
    return re.sub(r"/\*.*?\*/", "", text, flags=re.S)


def resolve(module, is_mod_file, head, parts, modules):
    if head == "crate":
        base = ()
    else:
        # In a `mod.rs` (or lib.rs), `self` is the directory's module; `super` its parent.
        base = module
        if head == "super":
            base = base[:-1]
    path = base + tuple(parts)
    # The longest prefix that is a module.
    while path and path not in modules:
        path = path[:-1]
    return path


def main():
    show_edges = "--edges" in sys.argv
    allowed = [tuple(sys.argv[i + 1].split("::")) for i, a in enumerate(sys.argv) if a == "--allow-within"]
    # main.rs is the binary, not the library; tests.rs files are unit tests.
    sources = {module_of(f): f for f in files() if not f.endswith(("main.rs", "/tests.rs"))}
    modules = set(sources)
    edges = {m: set() for m in modules}
    for module, path in sources.items():
        text = strip_comments(open(path).read())
        # Tests are not part of the graph.
        text = re.split(r"#\[cfg\(test\)\]\s*mod\s+tests\s*\{", text)[0]
        is_mod = os.path.basename(path) in ("mod.rs", "lib.rs")
        found = []
        for head, inner in GROUP.findall(text):
            for item in re.split(r",", re.sub(r"\{[^{}]*\}", "", inner)):
                item = item.strip()
                if item:
                    found.append((head, [p for p in item.split("::") if p and p != "self"]))
        for head, rest in PATH.findall(text):
            found.append((head, [p for p in rest.split("::") if p]))
        # A bare path whose first segment is a child module (`pages::overview`).
        for name in set(BARE.findall(text)):
            child = module + (name,)
            if child in modules:
                found.append(("self", [name]))
        for head, parts in found:
            target = resolve(module, is_mod, head, parts, modules)
            if target != module:
                edges[module].add(target)
    if show_edges:
        for m in sorted(edges):
            for t in sorted(edges[m]):
                print("::".join(m), "->", "::".join(t))
    # Tarjan's strongly connected components.
    index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            scc = []
            while True:
                w = stack.pop()
                on.discard(w)
                scc.append(w)
                if w == v:
                    break
            if len(scc) > 1:
                sccs.append(scc)

    sys.setrecursionlimit(10000)
    for v in sorted(modules):
        if v not in index:
            visit(v)
    failing = 0
    for scc in sccs:
        known = any(all(m[: len(a)] == a for m in scc) for a in allowed)
        failing += not known
        label = "known cycle" if known else "cycle"
        print(f"{label} of {len(scc)} modules: " + ", ".join(sorted("::".join(m) or "crate" for m in scc)))
    print(f"{len(modules)} modules, {sum(len(e) for e in edges.values())} imports, {len(sccs)} cycles")
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
