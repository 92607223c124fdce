"""What of this process the kernel still holds, asked from the kernel itself.

Other programs load BPF objects concurrently, so nothing here looks at the
whole system: "ours" is what this process's fds name (/proc/self/fdinfo), and
an id recorded from one of our fds is looked up in the kernel's listing
(BPF_*_GET_NEXT_ID) to see that it is gone.
"""
import os
import time

from pyprobe.backend.libbpf import ffi, lib

# readlink(/proc/self/fd/N) of what a BPF program holds
KINDS = {"anon_inode:bpf-prog": "prog", "anon_inode:bpf-map": "map", "anon_inode:bpf_link": "link",
         "anon_inode:btf": "btf", "anon_inode:[perf_event]": "perf_event"}
ID_FIELD = {"prog": "prog_id", "map": "map_id", "link": "link_id", "btf": "btf_id"}


def held() -> dict[int, tuple[str, int | None]]:
    """fd -> (kind, kernel id) for every BPF object or perf event this process holds."""
    out = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            kind = KINDS.get(os.readlink(f"/proc/self/fd/{name}"))
            if kind is None:
                continue
            with open(f"/proc/self/fdinfo/{name}") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            continue                     # closed meanwhile
        ident = fields.get(ID_FIELD.get(kind, ""), "").strip()
        out[int(name)] = (kind, int(ident) if ident else None)
    return out


def ids(objects: dict) -> set[tuple[str, int]]:
    return {(kind, i) for kind, i in objects.values() if kind in ("prog", "map", "link") and i is not None}


def _listing(next_id) -> set[int]:
    out, cur, nxt = set(), 0, ffi.new("uint32_t *")
    while next_id(cur, nxt) == 0:
        cur = nxt[0]
        out.add(cur)
    return out


def still_listed(recorded: set[tuple[str, int]], wait: float = 10.0) -> set[tuple[str, int]]:
    """The recorded (kind, id) the kernel still lists after up to `wait` seconds
    (a released program is freed after an RCU grace period)."""
    listers = {"prog": lib.bpf_prog_get_next_id, "map": lib.bpf_map_get_next_id, "link": lib.bpf_link_get_next_id}
    end = time.monotonic() + wait
    while True:
        live = {kind: _listing(fn) for kind, fn in listers.items()}
        left = {(k, i) for k, i in recorded if i in live[k]}
        if not left or time.monotonic() > end:
            return left
        time.sleep(0.05)
