"""`MyProgram.simulate(**params)`: a program's maps and handlers, run in plain Python.

    sim = CountReads.simulate()
    sim.set(tgid=1234)
    sim.count_reads(fd=3, count=4096)          # one sys_enter_read event
    assert sim.counts[1234] == 1

Each handler is a method taking its event: tracepoint fields by name, function
arguments (positional or by the handler's parameter names), `retval=` for
return probes, `args=[...]` for raw tracepoints, `usdt_args=[...]` for USDT.
"""
from __future__ import annotations

import sys

from pyprobe.errors import Location, PyprobeError
from pyprobe.sim.state import SimulationError, State, make_runtime

_SETTABLE = ("tgid", "tid", "uid", "gid", "cpu", "ktime_ns", "comm", "task", "random", "stack", "user_stack")


class Simulation:
    """The user side of a simulated program: maps and buffers by name, one method per handler,
    `set()` for what the helpers return, `trace` for trace_printk's lines."""

    def __init__(self, cls, params: dict, ncpus: int = 2, kernel=None, attach_to: dict | None = None):
        from pyprobe.dsl.types import Scalar
        from pyprobe.sim.buffers import EventBufferSim
        from pyprobe.sim.program import compiled_program, is_event_buffer, is_prog_array
        from pyprobe.sim.storage import storage_for
        from pyprobe.sim.views import view_for

        from pyprobe.dsl.attach_to import chosen

        # attach_to as the Program's constructor takes it: each handler runs at the first point
        # given (a tracepoint's fields, a cookie), and one given None is not there to run
        self._program = program = compiled_program(cls, kernel, chosen(cls, attach_to))
        unknown = set(params) - set(program.params)
        if unknown:
            raise TypeError(f"{cls.__name__} has no Param {', '.join(sorted(unknown))} "
                            f"(Params: {', '.join(sorted(program.params)) or 'none'})")
        self._state = state = State(ncpus)
        ns = make_runtime(state)
        for name, p in program.params.items():
            ns[f"P_{name}"] = p.type.wrap(int(params.get(name, p.default)))
        self._maps: dict = {}
        for name, spec in program.maps.items():
            if is_event_buffer(spec):
                ns[f"B_{name}"] = self._maps[name] = EventBufferSim(spec, state, name)
            elif spec.kind in ("queue", "stack"):
                storage = ns[f"M_{name}"] = storage_for(spec, state)
                self._maps[name] = view_for(spec, storage, name)
            elif is_prog_array(spec) or spec.keyless or spec.value is None or spec.key is None:
                continue
            else:
                storage = ns[f"M_{name}"] = storage_for(spec, state)
                self._maps[name] = view_for(spec, storage, name)
        exec(program.code, ns)
        self._ns = ns
        self._handlers = {name: ns[f"H_{name}_0"] for name in program.handlers}
        # maps and handlers by name; a handler named like a method here (set, trace) shadows it:
        # sim.handler(name) and sim.maps[name] always work
        self.__dict__.update(self._maps)
        self.__dict__.update({name: self.handler(name) for name in program.handlers})

    # ---- what a test uses --------------------------------------------------
    def __getattr__(self, name):
        maps = self.__dict__.get("_maps", {})
        if name in maps:
            return maps[name]
        program = self.__dict__.get("_program")
        if program is not None and name in program.handlers:
            run = self.__dict__[name] = self.handler(name)      # cached: the next call skips __getattr__
            return run
        raise AttributeError(f"the simulated {program.cls.__name__ if program else 'program'} has no map or "
                             f"handler '{name}'")

    def set(self, **values) -> "Simulation":
        """What helpers return from now on: tgid, tid, uid, gid, cpu, ktime_ns, comm, task, random,
        stack, user_stack. `pid` is tgid; `task` is a dict of the task_struct fields current_task()
        reads; `stack` / `user_stack` the addresses get_stackid() hashes, innermost first."""
        if "pid" in values:
            values["tgid"] = values.pop("pid")
        unknown = set(values) - set(_SETTABLE)
        if unknown:
            raise TypeError(f"sim.set() takes {', '.join(_SETTABLE)} (not {', '.join(sorted(unknown))})")
        s = self._state
        for name, value in values.items():
            if name == "comm":
                data = value.encode() if isinstance(value, str) else bytes(value)
                s.comm = bytearray(data[:15].ljust(16, b"\0"))      # the kernel's comm keeps a NUL
            elif name == "cpu":
                if not 0 <= value < s.ncpus:
                    raise ValueError(f"cpu {value}: this simulation has {s.ncpus} CPUs (simulate(ncpus=N))")
                s.cpu = value
            elif name == "task":
                s.task = value
            elif name in ("stack", "user_stack"):
                setattr(s, name, None if value is None else [int(a) for a in value])
            else:
                bits = 64 if name == "ktime_ns" else 32
                setattr(s, name, int(value) & ((1 << bits) - 1))
        return self

    def advance(self, ns: int) -> "Simulation":
        """Move the clock (ktime_ns()) forward."""
        self._state.ktime_ns = (self._state.ktime_ns + ns) & ((1 << 64) - 1)
        return self

    @property
    def ktime_ns(self) -> int:
        return self._state.ktime_ns

    @property
    def trace(self) -> list[str]:
        """trace_printk's messages so far, one string per call (trailing newline removed)."""
        return self._state.trace

    @property
    def maps(self) -> dict:
        return dict(self._maps)

    def poll(self, timeout_ms: int = 0) -> int:
        """Run the callbacks of buffers opened with .open(callback) on the records waiting."""
        return sum(m.dispatch() for m in self._maps.values() if getattr(m, "_callbacks", None))

    def handler(self, name: str):
        """The handler `name` as a function of its event (the same as sim.<name>)."""
        from pyprobe.sim.contexts import argument_in

        compiled = self._program.handlers[name]
        fn = self._handlers[name]
        event = compiled.context.event
        arg_names, arg_types = compiled.arg_names, compiled.arg_types
        located = self._located

        def run(*args, **fields):
            if args or arg_names:
                values = list(args)
                for arg in arg_names[len(values):]:
                    values.append(fields.pop(arg, 0))
                if len(values) > len(arg_names):
                    raise TypeError(f"{name}() takes {len(arg_names)} function arguments "
                                    f"({', '.join(arg_names) or 'none'}), {len(values)} given")
                values = [argument_in(self, t, v, f"{a}=") for a, t, v in zip(arg_names, arg_types, values)]
            else:
                values = ()
            ctx = event(self, fields)
            try:
                result = fn(ctx, *values)
                if "_pkt" in ctx:                     # a packet program: the packet as it leaves, with its writes
                    self._state.packet = bytes(ctx["_pkt"])
                return result
            except SimulationError as e:
                raise located(e, compiled) from None
            except PyprobeError:
                raise
            except Exception as e:                   # a bug of the simulator: say where it happened
                raise located(SimulationError(f"{type(e).__name__}: {e}"), compiled) from e

        run.__name__ = name
        run.__doc__ = f"Run {self._program.cls.__name__}.{name} on one event."
        return run

    @property
    def packet(self) -> bytes | None:
        """The packet the last packet handler ran on, with what it wrote (XDP_TX, a rewrite)."""
        return self._state.packet

    @property
    def memory(self):
        return self._state.memory

    def _located(self, error: SimulationError, compiled) -> SimulationError:
        tb = sys.exc_info()[2]
        place = None
        while tb is not None:
            if tb.tb_frame.f_code.co_filename == self._program.filename:
                place = self._program.user_line(tb.tb_lineno)
            tb = tb.tb_next
        if error.lineno is not None:
            filename = place[0] if place else compiled.filename
            error.loc = Location(filename, error.lineno)
        elif place is not None:
            error.loc = Location(place[0], place[1])
        return error

    def __repr__(self) -> str:
        return f"<simulated {self._program.cls.__name__}: maps {', '.join(self._maps) or 'none'}>"


def simulate(cls, ncpus: int = 2, kernel=None, attach_to: dict | None = None, **params) -> Simulation:
    return Simulation(cls, params, ncpus, kernel, attach_to)
