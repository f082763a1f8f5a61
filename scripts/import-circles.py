#!/usr/bin/env python3
"""Import circles between the modules of Rust crates, file by file.

usage: scripts/import-circles.py [-v] [--family] <crate>/src ...

An edge A -> B means a file of module A names module B: a `use` or
`pub use`, or an inline path (`crate::b::..`, `super::..`, a child module
named relatively). `mod b;` declarations are not imports, nor are imports
inside `#[cfg(test)]` (cut from the first one on), nor the crate root's
re-exports (every module may name a crate-level item). Prints every
strongly connected component of more than one module and exits 1 if
there is one.

By default an `<axis>/mod.rs` that re-exports its own submodules while
they use its trait (the STYLE.md layout: trait in mod.rs, one file per
implementation) is not a circle: edges between a module and its own
descendants are ignored. `--family` counts them too. `-v` prints every
edge."""
import os, re, sys

def modules(src):
    mods = {}
    for root, _, files in os.walk(src):
        for f in files:
            if not f.endswith('.rs'): continue
            p = os.path.join(root, f)
            rel = os.path.relpath(p, src)[:-3].split(os.sep)
            if rel[-1] in ('mod', 'lib', 'main'): rel = rel[:-1]
            mods[tuple(rel)] = p
    return mods

def strip(text):
    text = re.sub(r'//[^\n]*', '', text)
    return text

def expand_use(stmt):
    # stmt like crate::a::{b::C, d} -> list of paths
    m = re.match(r'^(.*?)\{(.*)\}$', stmt.strip(), re.S)
    if not m: return [stmt.strip()]
    prefix, inner = m.group(1), m.group(2)
    parts, depth, cur = [], 0, ''
    for ch in inner:
        if ch == ',' and depth == 0: parts.append(cur); cur = ''; continue
        if ch == '{': depth += 1
        if ch == '}': depth -= 1
        cur += ch
    parts.append(cur)
    out = []
    for p in parts:
        p = p.strip()
        if p: out += expand_use(prefix + p)
    return out

def resolve(me, path, mods, is_modfile):
    segs = [s for s in path.split('::') if s]
    if not segs: return None
    if segs[0] == 'crate': base, segs = [], segs[1:]
    elif segs[0] in ('super', 'self'):
        base = list(me) if is_modfile else list(me)  # module path of file
        while segs and segs[0] in ('super', 'self'):
            if segs[0] == 'super': base = base[:-1]
            segs = segs[1:]
    elif tuple(list(me) + segs[:1]) in mods: base = list(me)  # a child module, named relatively
    else: return None
    best = None
    for i in range(len(segs) + 1):
        cand = tuple(base + segs[:i])
        if cand in mods: best = cand
    return best

def graph(src):
    mods = modules(src)
    edges = {m: set() for m in mods}
    for m, p in mods.items():
        text = strip(open(p).read())
        # cut #[cfg(test)] mod tests { ... } at the end (test-only imports)
        i = text.find('#[cfg(test)]')
        if i >= 0: text = text[:i]
        paths = []
        for u in re.findall(r'\buse\s+([^;]+);', text):
            paths += expand_use(u)
        paths += re.findall(r'(?<![\w:])(?:crate|super|self)(?:::\w+)+', text)
        paths += [x for x in re.findall(r'(?<![\w:])\w+(?:::\w+)+', text)]
        for path in paths:
            t = resolve(m, path.split(' as ')[0].strip(), mods, True)
            if t is None or t == m or t == ():
                continue
            family = m[:len(t)] == t or t[:len(m)] == m
            if family and not FAMILY:
                continue
            edges[m].add(t)
    return mods, edges

def sccs(edges):
    index, low, st, on, out, n = {}, {}, [], set(), [], [0]
    def visit(v):
        index[v] = low[v] = n[0]; n[0] += 1; st.append(v); on.add(v)
        for w in edges[v]:
            if w not in index: visit(w); low[v] = min(low[v], low[w])
            elif w in on: low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            c = []
            while True:
                w = st.pop(); on.discard(w); c.append(w)
                if w == v: break
            out.append(c)
    for v in edges:
        if v not in index: visit(v)
    return [c for c in out if len(c) > 1]

bad = 0
flags = [a for a in sys.argv[1:] if a.startswith('-')]
FAMILY = '--family' in flags
for src in [a for a in sys.argv[1:] if not a.startswith('-')]:
    mods, edges = graph(src)
    name = lambda m: '::'.join(m) or 'lib'
    cyc = sccs(edges)
    if '-v' in flags:
        for a in sorted(edges):
            print('  ', name(a), '->', ', '.join(sorted(name(b) for b in edges[a])))
    print(f'{src}: {len(mods)} modules, {sum(map(len, edges.values()))} edges, {len(cyc)} cycles')
    for c in cyc:
        bad += 1
        print('  cycle:', ', '.join(sorted(name(m) for m in c)))
        for a in c:
            for b in edges[a]:
                if b in c: print(f'    {name(a)} -> {name(b)}')
sys.exit(1 if bad else 0)
