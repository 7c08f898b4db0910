#!/usr/bin/env bash
# The module-level import graph of agent/ and its circles (strongly connected components).
#
# A node is one module file (agent/run/bootstrap/plan.rs is run::bootstrap::plan, a mod.rs is
# its folder's module); an edge A -> B is a path in A's non-test code (`use` or inline) that
# names B or an item in B: crate::…, super::…, self::…, or a child module of A (in a `use` or
# inline). `mod x;` is not an edge. Test modules (`#[cfg(test)] mod tests`) are left out.
#
# Usage: scripts/import-graph.sh [--edges] [--allow-parent] [agent-dir]
#   prints each circle (one line, its modules) and the edges inside it; exits 1 when there is
#   one, 0 when there is none. --edges prints the whole graph instead. --allow-parent leaves
#   out the edges from a module to its own ancestors (a child naming its parent's error type,
#   say), so only the circles between siblings and across folders remain.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
edges=0 parent=0
while [ $# -gt 0 ]; do
  case "$1" in
    --edges) edges=1; shift ;;
    --allow-parent) parent=1; shift ;;
    -*) echo "usage: $0 [--edges] [--allow-parent] [agent-dir]" >&2; exit 2 ;;
    *) break ;;
  esac
done
root="${1:-$here/agent}"
[ -d "$root" ] || { echo "$0: no such directory: $root" >&2; exit 2; }
exec python3 - "$root" "$edges" "$parent" <<'PY'
import os, re, sys

root, show_edges, allow_parent = sys.argv[1], sys.argv[2] == "1", sys.argv[3] == "1"

def module_of(path):
    rel = os.path.relpath(path, root)[:-3].split(os.sep)
    if rel[-1] in ("mod", "lib", "main"):
        rel = rel[:-1]
    return tuple(rel)

files = {}
for d, _, names in os.walk(root):
    for n in names:
        if n.endswith(".rs") and not (d == root and n == "main.rs"):
            p = os.path.join(d, n)
            files[module_of(p)] = p
modules = set(files)

def strip(text):
    # Comments, string and char literals out (one pass, so `"http://…"` is not a comment), then
    # the test module.
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i): depth, i = depth + 1, i + 2
                elif text.startswith("*/", i): depth, i = depth - 1, i + 2
                else: i += 1
        elif c == "r" and re.match(r'r#*"', text[i:i + 260]) and not (i and (text[i - 1].isalnum() or text[i - 1] == "_")):
            hashes = re.match(r'r(#*)"', text[i:]).group(1)
            j = text.find('"' + hashes, i + len(hashes) + 2)
            out.append('""'); i = n if j < 0 else j + 1 + len(hashes)
        elif c == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            out.append('""'); i += 1
        elif c == "'" and re.match(r"'(\\.[^']*|[^\\'])'", text[i:i + 12]):
            i = text.find("'", i + 3 if text[i + 1] == "\\" else i + 2) + 1
            out.append("' '")
        else:
            out.append(c); i += 1
    text = "".join(out)
    m = re.search(r'#\[cfg\(test\)\]\s*(pub(\([^)]*\))?\s+)?mod\s+\w+\s*\{', text)
    return text[:m.start()] if m else text

def expand(tree):
    # `a::{b, c::{d, e}}` -> [a::b, a::c::d, a::c::e]
    tree = re.sub(r'\s+', '', tree)
    def parse(s, i):
        out, cur = [], ""
        while i < len(s):
            c = s[i]
            if c == "{":
                inner, i = parse(s, i + 1)
                out.extend(cur + x for x in inner)
                cur = None
            elif c == "}":
                if cur: out.append(cur)
                return out, i
            elif c == ",":
                if cur: out.append(cur)
                cur = ""
            else:
                cur = (cur or "") + c
            i += 1
        if cur: out.append(cur)
        return out, i
    return parse(tree, 0)[0]

def resolve(here, path):
    parts = [p for p in path.split("::") if p]
    parts = [re.sub(r'\bas\b.*$', '', p) for p in parts]
    if not parts:
        return None
    cur = list(here)
    if parts[0] == "crate":
        cur, parts = [], parts[1:]
    elif parts[0] in ("super", "self"):
        while parts and parts[0] in ("super", "self"):
            if parts[0] == "super":
                if not cur: return None
                cur = cur[:-1]
            parts = parts[1:]
    elif tuple(cur + [parts[0]]) in modules:
        pass  # a child module, named relatively
    else:
        return None  # an external crate or a local name
    best = tuple(cur)
    for p in parts:
        cur = cur + [p]
        if tuple(cur) in modules:
            best = tuple(cur)
        else:
            break
    return best

graph = {m: set() for m in modules}
for m, p in files.items():
    text = strip(open(p, encoding="utf-8").read())
    paths = []
    for u in re.finditer(r'\buse\s+([^;]+);', text):
        paths.extend(expand(u.group(1)))
    rest = re.sub(r'\buse\s+[^;]+;', '', text)
    paths.extend(x.group(0) for x in re.finditer(r'\b(?:crate|super|self)(?:::\w+)+', rest))
    # Inline paths through a child module (`layout::publish(…)` in index/mod.rs).
    paths.extend(x.group(0) for x in re.finditer(r'(?<![:\w])[a-z_][a-z0-9_]*(?:::\w+)+', rest)
                 if m + (x.group(0).split("::")[0],) in modules)
    for x in paths:
        t = resolve(m, x.split("::*")[0])
        if t is None or t == m or t not in modules:
            continue
        if allow_parent and m[:len(t)] == t:
            continue
        graph[m].add(t)

name = lambda m: "::".join(m) or "crate"
if show_edges:
    for m in sorted(graph):
        for t in sorted(graph[m]):
            print(f"{name(m)} -> {name(t)}")
    sys.exit(0)

# Tarjan's strongly connected components, iteratively.
index, low, on, stack, sccs, n = {}, {}, set(), [], [], [0]
for start in sorted(graph):
    if start in index: continue
    work = [(start, iter(sorted(graph[start])))]
    index[start] = low[start] = n[0]; n[0] += 1; stack.append(start); on.add(start)
    while work:
        v, it = work[-1]
        w = next(it, None)
        if w is not None:
            if w not in index:
                index[w] = low[w] = n[0]; n[0] += 1; stack.append(w); on.add(w)
                work.append((w, iter(sorted(graph[w]))))
            elif w in on:
                low[v] = min(low[v], index[w])
            continue
        work.pop()
        if work:
            low[work[-1][0]] = min(low[work[-1][0]], low[v])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v: break
            if len(comp) > 1:
                sccs.append(sorted(comp))
print(f"{len(files)} modules, {sum(len(e) for e in graph.values())} edges, {len(sccs)} circle(s)")
for c in sorted(sccs):
    print("circle: " + " ".join(name(m) for m in c))
    for a in c:
        for b in sorted(graph[a]):
            if b in c:
                print(f"    {name(a)} -> {name(b)}")
sys.exit(1 if sccs else 0)
PY
