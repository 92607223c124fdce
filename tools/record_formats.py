"""Record tracepoint formats for simulations without root: pyprobe/sim/formats.txt.

    sudo .venv/bin/python tools/record_formats.py [category ...]

One line per tracepoint: `category:name` then its non-common fields, each as
`declaration;offset;size;signed`, separated by `|`. Re-run on a newer kernel to
refresh; the simulator prefers the live tracefs when it can read it.
"""
import os
import re
import sys

CATEGORIES = ["syscalls", "raw_syscalls", "sched", "block", "random", "signal", "task", "tcp", "sock", "timer", "kmem", "percpu"]
FIELD = re.compile(r"field:(?P<decl>[^;]+);\s*offset:(?P<off>\d+);\s*size:(?P<size>\d+);\s*signed:(?P<signed>\d)")


def main(categories):
    root = "/sys/kernel/tracing/events"
    out = []
    for category in categories:
        if not os.path.isdir(os.path.join(root, category)):
            continue
        for name in sorted(os.listdir(os.path.join(root, category))):
            path = os.path.join(root, category, name, "format")
            if not os.path.exists(path):
                continue
            with open(path) as f:
                fields = [m for m in FIELD.finditer(f.read()) if "common_" not in m["decl"]]
            out.append(f"{category}:{name}|" + "|".join(
                f"{m['decl'].strip()};{m['off']};{m['size']};{m['signed']}" for m in fields))
    target = os.path.join(os.path.dirname(__file__), "..", "pyprobe", "sim", "formats.txt")
    with open(target, "w") as f:
        f.write(f"# tracepoint formats recorded on Linux {os.uname().release} by tools/record_formats.py\n")
        f.write("\n".join(out) + "\n")
    print(f"{len(out)} tracepoints -> {os.path.normpath(target)}")


if __name__ == "__main__":
    main(sys.argv[1:] or CATEGORIES)
