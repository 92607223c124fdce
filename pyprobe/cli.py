"""The `pyprobe` command: run, c, list, doctor."""
from __future__ import annotations

import argparse
import fnmatch
import os
import runpy
import sys


def cmd_run(args) -> int:
    """Run a program file as __main__ (its own Ctrl-C handling prints its summary)."""
    sys.argv = [args.file, *args.args]
    if args.verbose:
        os.environ["PYPROBE_VERBOSE"] = "1"
    try:
        runpy.run_path(args.file, run_name="__main__")
    except KeyboardInterrupt:
        return 130
    return 0


def _programs_in(path: str):
    from pyprobe.program import Program

    namespace = runpy.run_path(path, run_name="__pyprobe_inspect__")
    return [v for v in namespace.values()
            if isinstance(v, type) and issubclass(v, Program) and v is not Program and v.__module__ == "__pyprobe_inspect__"]


def cmd_c(args) -> int:
    """Print the generated C of every Program class in a file."""
    programs = _programs_in(args.file)
    if not programs:
        print(f"{args.file}: no Program subclasses found", file=sys.stderr)
        return 1
    from pyprobe.errors import PyprobeError

    status = 0
    for cls in programs:
        if args.name and cls.__name__ != args.name:
            continue
        try:
            print(cls.translate())
        except PyprobeError as e:        # e.g. a fallback class for a kernel this is not
            print(f"/* {cls.__name__}: not translatable on this kernel:\n{e}\n*/", file=sys.stderr)
            status = 1
    return status


def cmd_list(args) -> int:
    """List probe points: tracepoint:cat:name, kprobe:function, uprobe:/path:symbol."""
    kind, _, pattern = args.pattern.partition(":")
    pattern = pattern or "*"
    if kind == "tracepoint":
        from pyprobe.backend.tracefs import tracefs_root

        with open(os.path.join(tracefs_root(), "available_events")) as f:
            for line in f:
                if fnmatch.fnmatch(line.strip(), pattern):
                    print("tracepoint:" + line.strip())
    elif kind in ("kprobe", "kretprobe", "fentry"):
        from pyprobe.backend import features
        from pyprobe.backend.tracefs import tracefs_root

        if kind != "fentry" and not features.has("kprobes"):
            print("note: this kernel has no kprobes; these functions are traceable elsewhere only",
                  file=sys.stderr)
        for name in _kernel_functions(tracefs_root()):
            if fnmatch.fnmatch(name, pattern):
                print(f"{kind}:{name}")
    elif kind in ("uprobe", "uretprobe"):
        from pyprobe.backend.attach import resolve_binary
        from pyprobe.runtime.symbols import elf_symbols

        binary, _, sym_pattern = pattern.rpartition(":") if ":" in pattern else (pattern, "", "*")
        path = resolve_binary(binary)
        for name in sorted({n for n, *_ in elf_symbols(path).functions.items()}):
            if fnmatch.fnmatch(name, sym_pattern or "*"):
                print(f"{kind}:{path}:{name}")
    else:
        print(f"unknown probe kind {kind!r}: use tracepoint:, kprobe:, fentry: or uprobe:", file=sys.stderr)
        return 2
    return 0


def _kernel_functions(tracefs: str) -> list[str]:
    """Traceable kernel functions; /proc/kallsyms text symbols where ftrace's list is closed."""
    try:
        with open(os.path.join(tracefs, "available_filter_functions")) as f:
            return [line.split()[0] for line in f if line.strip()]
    except OSError:
        with open("/proc/kallsyms") as f:
            return [parts[2] for parts in (line.split() for line in f) if parts[1] in "tT"]


def cmd_doctor(args) -> int:
    """What this kernel supports, and how to fix what is missing."""
    from pyprobe.backend import features

    if args.refresh:
        features.forget()
    print(f"kernel {os.uname().release}")
    missing = 0
    for feature, ok in features.report():
        print(f"  [{'ok' if ok else '--'}] {feature.summary}")
        if not ok:
            missing += 1
            print(f"        fix: {feature.fix}")
    from pyprobe.backend import clang

    try:
        print(f"  [ok] clang at {clang.clang_path()}")
    except Exception as e:  # noqa: BLE001 - report, don't crash the doctor
        print(f"  [--] {e}")
        missing += 1
    return 0 if not missing else 1


def main(argv=None) -> int:
    from pyprobe import tools

    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in tools.TOOLS:          # `pyprobe execsnoop -x`: bcc's tools (pyprobe/tools/)
        return tools.main(argv[0], argv[1:])
    parser = argparse.ArgumentParser(prog="pyprobe", description="eBPF tracing tools in Python",
                                     epilog="tools: " + " ".join(tools.TOOLS) + " (pyprobe TOOL --help)")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="run a program file")
    p.add_argument("-v", "--verbose", action="store_true", help="print the probe points chosen")
    p.add_argument("file")
    p.add_argument("args", nargs=argparse.REMAINDER)
    p.set_defaults(fn=cmd_run)
    p = sub.add_parser("c", help="print the generated C of a program file")
    p.add_argument("file")
    p.add_argument("--name", help="only this Program class")
    p.set_defaults(fn=cmd_c)
    p = sub.add_parser("list", help="list probe points, e.g. 'tracepoint:block:*'")
    p.add_argument("pattern")
    p.set_defaults(fn=cmd_list)
    p = sub.add_parser("doctor", help="what this kernel supports")
    p.add_argument("--refresh", action="store_true", help="probe again instead of using cached answers")
    p.set_defaults(fn=cmd_doctor)
    args = parser.parse_args(argv)
    from pyprobe.errors import PyprobeError

    try:
        return args.fn(args)
    except PyprobeError as e:
        print(f"pyprobe: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
