"""The `pyprobe` command: run, c, list, doctor, serve, and the tools (`pyprobe <tool>`).

Errors a user can fix (a wrong path, a class or pattern that is not there) are one
line on stderr and exit 2; a listing that matches nothing exits 1; a closed pipe
(`pyprobe ... | head`) ends quietly with 141, as a shell reports SIGPIPE.
"""
from __future__ import annotations

import argparse
import fnmatch
import os
import sys


class CliError(Exception):
    """A one-line error for the user; `code` is the exit status."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


# ---- program files -------------------------------------------------------------------

def _check_file(path: str) -> None:
    if not os.path.exists(path):
        raise CliError(f"no such file: {path}")
    if not os.path.isfile(path):
        raise CliError(f"not a file: {path}")


def load_module(path: str):
    """Import a program file as a module named after it (so generated C and caches name it)."""
    import importlib.util

    _check_file(path)
    stem = os.path.splitext(os.path.basename(path))[0]
    name = stem if stem.isidentifier() and stem not in sys.modules else f"pyprobe_file_{abs(hash(path))}"
    spec = importlib.util.spec_from_file_location(name, os.path.abspath(path))
    if spec is None or spec.loader is None:
        raise CliError(f"not a Python file: {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def programs_in(path: str, name: str | None = None) -> list:
    """The Program classes a file defines (only `name` if given)."""
    from pyprobe.program import Program

    module = load_module(path)
    found = [v for v in vars(module).values()
             if isinstance(v, type) and issubclass(v, Program) and v.__module__ == module.__name__]
    if not found:
        raise CliError(f"{path}: no Program subclasses found")
    if name is not None:
        chosen = [c for c in found if c.__name__ == name]
        if not chosen:
            raise CliError(f"{path}: no Program class {name} (has: {', '.join(c.__name__ for c in found)})")
        return chosen
    return found


# ---- run -------------------------------------------------------------------------------

def cmd_run(args) -> int:
    """Run a program file: as __main__ if it has a main block, else show its maps live."""
    _check_file(args.file)
    if args.verbose:
        os.environ["PYPROBE_VERBOSE"] = "1"
    with open(args.file, "rb") as f:
        has_main = b"__main__" in f.read()
    if has_main and args.name is None:
        import runpy

        sys.argv = [args.file, *args.args]
        runpy.run_path(args.file, run_name="__main__")
        return 0
    if args.args:                        # options after the file: the view's own, here
        args = _run_parser().parse_args([*_run_options(args), args.file, *args.args])
    classes = programs_in(args.file, args.name)
    if len(classes) > 1:
        raise CliError(f"{args.file} has several Programs: choose one with --name "
                       f"({', '.join(c.__name__ for c in classes)})")
    return _watch(classes[0], args.interval, args.duration)


def _watch(cls, interval: float, duration: float | None) -> int:
    """Attach, then show the maps every interval until Ctrl-C or `duration` seconds."""
    import time

    from pyprobe.display import LiveText, program_text

    with cls() as prog, LiveText() as view:
        start = time.monotonic()
        try:
            while duration is None or time.monotonic() - start < duration:
                left = interval if duration is None else min(interval, duration - (time.monotonic() - start))
                time.sleep(max(0.0, left))
                view.update(program_text(prog))
        except KeyboardInterrupt:
            pass
    return 0


# ---- c ---------------------------------------------------------------------------------

def cmd_c(args) -> int:
    """Print the generated C of every Program class in a file (or --name)."""
    from pyprobe.errors import PyprobeError

    status = 0
    for cls in programs_in(args.file, args.name):
        try:
            text = cls.translate()
        except PyprobeError as e:        # e.g. a fallback class for a kernel this is not
            print(f"/* {cls.__name__}: not translatable on this kernel:\n{e}\n*/", file=sys.stderr)
            status = 1
            continue
        print(text)
    return status


# ---- build -----------------------------------------------------------------------------

def cmd_build(args) -> int:
    """Translate and compile a script's Programs ahead of time (pyprobe/aot.py)."""
    from pyprobe import aot

    _check_file(args.file)
    for path in aot.build_file(args.file, args.name, args.args):
        print(f"pyprobe: built {os.path.relpath(path)}")
    return 0


# ---- list ------------------------------------------------------------------------------

def cmd_list(args) -> int:
    """List probe points: tracepoint:cat:name, kprobe:function, uprobe:/path:symbol,
    usdt:/path:provider:name."""
    kind, _, pattern = args.pattern.partition(":")
    pattern = pattern or "*"
    if kind == "tracepoint":
        points = _tracepoints(pattern)
    elif kind in ("kprobe", "kretprobe", "fentry", "fexit"):
        points = _kernel_points(kind, pattern)
    elif kind in ("uprobe", "uretprobe"):
        points = _user_points(kind, pattern)
    elif kind == "usdt":
        points = _usdt_points(pattern)
    else:
        raise CliError(f"unknown probe kind {kind!r}: use tracepoint:, kprobe:, fentry:, uprobe: or usdt:")
    matched = 0
    for point in points:
        print(point)
        matched += 1
    if not matched:
        print(f"pyprobe: no probe points match {args.pattern!r}", file=sys.stderr)
        return 1
    return 0


def _tracepoints(pattern: str):
    from pyprobe.backend.tracefs import tracefs_root

    with open(os.path.join(tracefs_root(), "available_events")) as f:
        for line in f:
            if fnmatch.fnmatch(line.strip(), pattern):
                yield "tracepoint:" + line.strip()


def _kernel_points(kind: str, pattern: str):
    from pyprobe.backend import features
    from pyprobe.backend.tracefs import tracefs_root

    if kind.startswith("k") and not features.has("kprobes"):
        print("note: this kernel has no kprobes; these functions are traceable elsewhere only", file=sys.stderr)
    for name in _kernel_functions(tracefs_root()):
        if fnmatch.fnmatch(name, pattern):
            yield f"{kind}:{name}"


def _user_points(kind: str, pattern: str):
    from pyprobe.backend.attach import resolve_binary
    from pyprobe.errors import PyprobeError
    from pyprobe.runtime.symbols import elf_symbols

    binary, _, sym_pattern = pattern.rpartition(":") if ":" in pattern else (pattern, "", "*")
    try:
        path = resolve_binary(binary)
        names = elf_symbols(path).function_names.names()     # aliases too: printf beside _IO_printf
    except (PyprobeError, OSError) as e:
        raise CliError(str(e).splitlines()[0]) from None
    for name in names:
        if fnmatch.fnmatch(name, sym_pattern or "*"):
            yield f"{kind}:{path}:{name}"


def _usdt_points(pattern: str):
    """usdt:BINARY[:GLOB]: the glob matches PROVIDER:NAME or NAME."""
    from pyprobe.backend.attach import resolve_binary
    from pyprobe.backend.usdt import usdt_probes
    from pyprobe.errors import PyprobeError

    binary, _, glob = pattern.partition(":")
    try:
        path = resolve_binary(binary)
        found = usdt_probes(path)
    except (PyprobeError, OSError) as e:
        raise CliError(str(e).splitlines()[0]) from None
    for provider, name in found:
        if fnmatch.fnmatch(f"{provider}:{name}", glob or "*") or fnmatch.fnmatch(name, glob):
            yield f"usdt:{path}:{provider}:{name}"


def _kernel_functions(tracefs: str) -> list[str]:
    """Traceable kernel functions; /proc/kallsyms text symbols where ftrace's list is closed."""
    try:
        with open(os.path.join(tracefs, "available_filter_functions")) as f:
            return [line.split()[0] for line in f if line.strip()]
    except OSError:
        from pyprobe.backend import ksyms

        return sorted(ksyms.text_symbols())


# ---- doctor ----------------------------------------------------------------------------

def cmd_doctor(args) -> int:
    """What this kernel supports, and how to fix what is missing."""
    from pyprobe.backend import features

    if args.refresh:
        features.forget()
    print(f"kernel {os.uname().release}")
    missing = 0
    privileged = features.may_load_bpf()
    for feature, ok in features.report():
        if not ok and feature.name == "root" and privileged:
            ok = True                    # not uid 0, but CAP_BPF + CAP_PERFMON (or CAP_SYS_ADMIN)
        if not ok and feature.name == "tracefs" and _tracefs_mounted():
            print(f"  [ok] tracefs mounted at {_tracefs_mounted()} (readable by root only)")
            continue
        if not ok and os.geteuid() != 0 and feature.name not in ("root", "btf"):
            # the probes ask as root (tracefs is root's even with CAP_BPF): that says nothing about the kernel
            print(f"  [??] {feature.summary}: cannot tell without root")
            continue
        print(f"  [{'ok' if ok else '--'}] {feature.summary}")
        if not ok:
            missing += 1
            fix = features.NEEDS_PRIVILEGE if feature.name == "root" else \
                features.old_build(feature.name) or feature.fix
            print(f"        fix: {fix}")
    from pyprobe.backend import clang

    try:
        print(f"  [ok] clang at {clang.clang_path()}")
    except Exception as e:  # noqa: BLE001 - report, don't crash the doctor
        print(f"  [--] {e}")
        missing += 1
    return 0 if not missing else 1


def _tracefs_mounted() -> str | None:
    """Where tracefs is mounted, read from /proc/self/mounts (needs no privilege)."""
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                fields = line.split()
                if len(fields) > 2 and fields[2] == "tracefs":
                    return fields[1]
    except OSError:
        pass
    return None


# ---- serve -----------------------------------------------------------------------------

def cmd_serve(args) -> int:
    """Load programs and expose their maps at /metrics until Ctrl-C or SIGTERM."""
    import contextlib
    import time

    from pyprobe import metrics
    from pyprobe.errors import PyprobeError

    if args.config:
        _check_file(args.config)
        config = metrics.read_config(args.config)
        entries = config["programs"]
        port = args.port if args.port is not None else config.get("port", metrics.DEFAULT_PORT)
        addr = args.addr if args.addr is not None else config.get("addr", "0.0.0.0")
    elif args.files:
        entries = [{"file": f, "name": args.name, "counters": args.counter} for f in args.files]
        port = args.port if args.port is not None else metrics.DEFAULT_PORT
        addr = args.addr if args.addr is not None else "0.0.0.0"
    else:
        raise CliError("serve needs program files or --config FILE")
    chosen = []
    for e in entries:
        classes = programs_in(e["file"], e.get("name"))
        if len(classes) > 1:
            raise CliError(f"{e['file']} has several Programs: choose one with "
                           f"{'name = ...' if args.config else '--name'} ({', '.join(c.__name__ for c in classes)})")
        chosen.append((classes[0], e))
    with contextlib.ExitStack() as stack:
        exported = []
        for cls, e in chosen:
            prog = stack.enter_context(cls(**e.get("params", {})))
            stack.callback(prog.close)
            try:       # a counter that names no map, two programs' metrics of one name: the command's mistake
                exported.append(metrics.Exported(prog, e.get("prefix", "pyprobe"), e.get("counters") or (),
                                                 drain=True))
                metrics.Collector(exported)
            except PyprobeError as err:
                raise CliError(str(err)) from None
        try:
            server = stack.enter_context(metrics.MetricsServer(exported, port, addr))
        except OSError as e:
            raise CliError(f"cannot listen on {addr}:{port}: {e.strerror}") from None
        print(f"pyprobe: serving {', '.join(c.__name__ for c, _ in chosen)} at {server.url}", file=sys.stderr,
              flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
        except SystemExit as e:          # SIGTERM (Program turns it into SystemExit): a clean stop
            if e.code != 128 + 15:
                raise
    return 0


# ---- the parser ----------------------------------------------------------------------

def _run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-v", "--verbose", action="store_true", help="print the probe points chosen")
    p.add_argument("--name", help="the Program class to watch (a file with several)")
    p.add_argument("-i", "--interval", type=float, default=1.0, help="seconds between views (default 1)")
    p.add_argument("-d", "--duration", type=float, help="stop after this many seconds")
    p.add_argument("file")


def _run_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pyprobe run")
    _run_arguments(p)
    return p


def _run_options(args) -> list[str]:
    out = ["--interval", str(args.interval)]
    if args.duration is not None:
        out += ["--duration", str(args.duration)]
    if args.name is not None:
        out += ["--name", args.name]
    return out


def _tool_registry() -> dict:
    """`pyprobe <tool>`: the tools' registry (pyprobe/tools/__init__.py: TOOLS and main)."""
    try:
        from pyprobe import tools
    except ImportError:
        return {}
    return getattr(tools, "TOOLS", {})


def _version() -> str:
    from pyprobe.version import __version__

    return __version__


def build_parser(tools: dict) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pyprobe", description="eBPF tracing tools in Python")
    parser.add_argument("--version", action="version", version=f"pyprobe {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("run", help="run a program file (a file without a main block: show its maps live)")
    _run_arguments(p)
    p.add_argument("args", nargs=argparse.REMAINDER)
    p.set_defaults(fn=cmd_run)
    p = sub.add_parser("c", help="print the generated C of a program file")
    p.add_argument("file")
    p.add_argument("--name", help="only this Program class")
    p.set_defaults(fn=cmd_c)
    p = sub.add_parser("build", help="compile a script's programs ahead of time: runs then need no clang")
    p.add_argument("file")
    p.add_argument("--name", help="only this Program class")
    p.add_argument("args", nargs=argparse.REMAINDER, help="sys.argv for the script while it is built")
    p.set_defaults(fn=cmd_build)
    p = sub.add_parser("list", help="list probe points, e.g. 'tracepoint:block:*', 'uprobe:c:printf' or 'usdt:/usr/bin/node'")
    p.add_argument("pattern")
    p.set_defaults(fn=cmd_list)
    p = sub.add_parser("doctor", help="what this kernel supports")
    p.add_argument("--refresh", action="store_true", help="probe again instead of using cached answers")
    p.set_defaults(fn=cmd_doctor)
    p = sub.add_parser("serve", help="expose programs' maps to Prometheus at /metrics")
    p.add_argument("files", nargs="*", metavar="FILE")
    p.add_argument("--port", type=int, help="default 9436 (0: any free port)")
    p.add_argument("--addr", help="address to listen on (default 0.0.0.0)")
    p.add_argument("--name", help="the Program class (a file with several)")
    p.add_argument("--counter", action="append", default=[], metavar="MAP",
                   help="export this map as a counter (default: gauges); repeatable")
    p.add_argument("--config", help="a TOML file naming several programs (see docs/fleet.md)")
    p.set_defaults(fn=cmd_serve)
    for name, summary in tools.items():
        sub.add_parser(name, help=summary, add_help=False)
    return parser


def _dispatch(argv: list[str]) -> int:
    if sys.stderr.isatty():             # a first compile or a mass attach shows a spinner there
        from pyprobe.display import show_progress_on_terminal

        show_progress_on_terminal(sys.stderr)
    tools = _tool_registry()
    if argv and argv[0] in tools:
        # the tool parses its own options (argparse's REMAINDER would eat `-x` wrongly)
        from pyprobe import tools as tools_mod

        return tools_mod.main(argv[0], argv[1:])
    args = build_parser(tools).parse_args(argv)
    return args.fn(args)


def _quiet_closed_pipe() -> int:
    # The reader went away: send what is left to /dev/null, so that the interpreter's
    # final flush does not complain either.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 141                      # 128 + SIGPIPE, what a shell shows for `cmd | head`


def main(argv=None) -> int:
    from pyprobe.errors import PyprobeError

    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        status = _dispatch(argv)
        sys.stdout.flush()
        return status
    except BrokenPipeError:
        return _quiet_closed_pipe()
    except CliError as e:
        print(f"pyprobe: {e}", file=sys.stderr)
        return e.code
    except PyprobeError as e:
        print(f"pyprobe: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
