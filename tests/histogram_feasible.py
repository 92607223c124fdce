"""Whether a kernel histogram is one the simulation allows, when the simulation knows each event's
bucket only as a range (the kernel's clock reads lie between two recorded times) and some events
only maybe happened for the program (they came while it was being attached or detached).

A flow with lower bounds (Hoffman's circulation): source -> each group of alike events (exactly
their number if they surely happened, at most that if maybe) -> each bucket in their range ->
sink (exactly the kernel's count). Feasible iff the circulation exists.
"""
from __future__ import annotations

from collections import Counter, defaultdict, deque

INF = 1 << 60


def _max_flow(cap: dict, s, t) -> int:
    flow = 0
    while True:
        parent = {s: None}
        queue = deque([s])
        while queue and t not in parent:
            u = queue.popleft()
            for v, c in cap[u].items():
                if c > 0 and v not in parent:
                    parent[v] = u
                    queue.append(v)
        if t not in parent:
            return flow
        push, v = INF, t
        while parent[v] is not None:
            push = min(push, cap[parent[v]][v])
            v = parent[v]
        v = t
        while parent[v] is not None:
            u = parent[v]
            cap[u][v] -= push
            cap[v][u] += push
            v = u
        flow += push


def feasible(kernel: Counter, items: list[tuple[int, int, bool]]) -> bool:
    """kernel: bucket -> count; items: (lowest bucket, highest bucket, surely happened) per event."""
    groups = Counter(items)
    cap = defaultdict(lambda: defaultdict(int))
    excess = Counter()

    def edge(u, v, low, high):
        cap[u][v] += high - low
        cap[v][u] += 0
        excess[v] += low
        excess[u] -= low

    for (lo, hi, sure), n in groups.items():
        g = ("g", lo, hi, sure)
        edge("S", g, n if sure else 0, n)
        for b in range(lo, hi + 1):
            edge(g, ("b", b), 0, n)
    buckets = set(kernel) | {b for lo, hi, _ in groups for b in range(lo, hi + 1)}
    for b in buckets:
        edge(("b", b), "T", kernel.get(b, 0), kernel.get(b, 0))
    edge("T", "S", 0, INF)
    need = 0
    for node, e in list(excess.items()):
        if e > 0:
            edge("S*", node, 0, e)
            need += e
        elif e < 0:
            edge(node, "T*", 0, -e)
    return _max_flow(cap, "S*", "T*") == need
