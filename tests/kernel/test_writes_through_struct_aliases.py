"""Writes through a name bound to a struct that lives in a map reach the map, on the real kernel
(`e = p.event` then `e.count += 1`, as bcc's `struct x *e = &p->event`); the simulation agrees."""
import os

from struct_aliases import Aliases

CALLS = 5


def _stats(prog) -> dict:
    stats = {int(k): v for k, v in prog.stats.items()}
    per_cpu = prog.per_cpu[0]
    return {
        "calls": int(stats[1]["calls"]),
        "event": (int(stats[1]["event"]["x"]), int(stats[1]["event"]["count"])),
        "items": [int(c) for c in stats[1]["items"]["count"]],
        "slot_x": [int(x) for x in prog.slots[1]["items"]["x"]],
        "per_cpu_count": int(sum(int(v["event"]["count"]) for v in per_cpu)),
        "stack_copies": [(int(stats[k]["event"]["x"]), [int(x) for x in stats[k]["items"]["x"]]) for k in (2, 3)],
    }


def test_writes_through_a_struct_alias_reach_the_map():
    with Aliases(target=os.getpid()) as prog:
        for _ in range(CALLS):
            os.getppid()
        seen = _stats(prog)
    assert seen == {
        "calls": CALLS,
        "event": (7, CALLS * 101),                     # e.count += 1 and bump(g, 100) through g = e
        "items": [CALLS, 2 * CALLS, 3 * CALLS],        # it = p.items[i]; it.count += i + 1
        "slot_x": [0, 0, 5 * CALLS],                   # slot = a.items[2]; slot.x += 5
        "per_cpu_count": 10 * CALLS,                   # pe = c.event; pe.count += 10 (one CPU's value)
        "stack_copies": [(3, [0, 4, 0])] * 2,          # f = s.event / s.items[1]; f = Inner() left s alone
    }
    sim = Aliases.simulate(target=os.getpid())
    sim.set(tgid=os.getpid())
    for _ in range(CALLS):
        sim.on_getppid()
    assert _stats(sim) == seen
