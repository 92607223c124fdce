"""The simulated machine a handler runs on: helper values, memory, the trace pipe,
event buffers, and the functions generated code calls (the `RUNTIME` namespace)."""
from __future__ import annotations

from pyprobe.errors import SimulationError
from pyprobe.sim.cvalues import PACKERS, log2l, sdiv, smod, udiv, umod


class Memory:
    """User and kernel memory the test gave as bytes, at made-up addresses."""

    BASE = 0x7F0000001000

    def __init__(self):
        self.regions: list[tuple[int, bytes]] = []
        self.next = self.BASE

    def place(self, data) -> int:
        if isinstance(data, (list, tuple)):          # char **argv: the strings, then NULL-ended pointers
            pointers = [self.place(d) if isinstance(d, (str, bytes, list, tuple)) else int(d) for d in data]
            data = b"".join(p.to_bytes(8, "little") for p in pointers + [0])
        if isinstance(data, str):
            data = data.encode() + b"\0"       # a C string
        address = self.next
        self.regions.append((address, bytes(data)))
        self.next += (len(data) + 0xFFF) // 0x1000 * 0x1000 + 0x1000
        return address

    def read(self, address: int, size: int, string: bool, lineno: int) -> bytes:
        for start, data in self.regions:
            if start <= address < start + max(len(data), 1):
                chunk = data[address - start:]
                if string:
                    chunk = chunk.split(b"\0", 1)[0]
                    return chunk[: size - 1] + b"\0"
                if len(chunk) < size:
                    raise SimulationError(f"reading {size} bytes at {address:#x}: the test gave only {len(chunk)}",
                                          lineno)
                return chunk[:size]
        raise SimulationError(f"the handler reads memory at {address:#x}, which the test did not give: pass the "
                              "pointed-to data as bytes or str for this argument or field", lineno)


class State:
    """`S` in generated code: what the helpers return, set by `sim.set(...)`."""

    def __init__(self, ncpus: int = 2):
        self.ncpus = ncpus
        self.tgid = 4242
        self.tid = 4242
        self.uid = 0
        self.gid = 0
        self.cpu = 0
        self.cgroup_id = 1            # the root cgroup's id
        self.ktime_ns = 1_000_000_000
        self.comm = bytearray(b"sim".ljust(16, b"\0"))
        self.task = None
        self.stack: list[int] | None = None          # get_stackid(ctx): kernel stack, innermost first
        self.user_stack: list[int] | None = None     # get_stackid(ctx, BPF_F_USER_STACK)
        self.random = 4
        self.trace: list[str] = []
        self.memory = Memory()
        self.packet: bytes | None = None

    def prandom(self) -> int:
        return self.random & 0xFFFFFFFF

    def printk(self, fmt: str, args: tuple) -> int:
        from pyprobe.sim.printk import format_message

        text = format_message(fmt, args)
        self.trace.append(text[:-1] if text.endswith("\n") else text)
        return len(text.encode())


def _index(i: int, n: int, lineno: int) -> int:
    if not 0 <= i < n:
        raise SimulationError(f"index {i} is out of range for an array of {n} (the verifier would refuse "
                              "a program that does not check it)", lineno)
    return i


def _addr(obj) -> int:
    """A kernel object as an address: 0 for None, itself for an int, else a made-up address."""
    if obj is None:
        return 0
    if isinstance(obj, int):
        return obj & ((1 << 64) - 1)
    return 0xFFFF888000000000 | (id(obj) & 0xFFFFFFFFF) << 3


def _kmember(obj, name: str, path: str, lineno: int):
    if obj is None or obj == 0:
        raise SimulationError(f"{path.rsplit('.', 1)[0]} is a NULL pointer here: the kernel would read 0, "
                              "which the simulator does not guess; give the object", lineno)
    if isinstance(obj, dict):
        if name in obj:
            return obj[name]
    elif hasattr(obj, name):
        return getattr(obj, name)
    root = path.split(".", 1)[0]
    how = "sim.set(task={...})" if root == "current_task()" else f"the {root} argument"
    raise SimulationError(f"{path} is kernel data the test did not give: provide it in {how}, "
                          f"e.g. {_example(path)}", lineno)


def _example(path: str) -> str:
    parts = path.split(".")[1:]
    text = "..."
    for p in reversed(parts):
        text = f"{{{p!r}: {text}}}"
    return text


def _kint(value, path: str, lineno: int) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, (dict,)) or hasattr(value, "__dict__"):
        return _addr(value)
    raise SimulationError(f"{path} must be an int in the test's object, not {type(value).__name__}", lineno)


def _kbytes(value, size: int, is_char: bool) -> bytes:
    if isinstance(value, str):
        value = value.encode()
    data = bytes(value)[: size - 1 if is_char else size]
    return data.ljust(size, b"\0")


def _read_scalar(buf, reader):
    return 0 if buf is None else reader(buf, 0)[0]


def _read_copy(buf, size: int) -> bytes:
    return bytes(size) if buf is None else bytes(buf)


def make_runtime(state: State) -> dict:
    """The globals of generated handler code."""
    ns = {"S": state, "_index": _index, "_addr": _addr, "_kmember": _kmember, "_kint": _kint, "_kbytes": _kbytes,
          "_sdiv": sdiv, "_smod": smod, "_udiv": udiv, "_umod": umod, "_log2l": log2l,
          "_read_scalar": _read_scalar, "_read_copy": _read_copy, "SimulationError": SimulationError}
    for name, packer in PACKERS.items():
        ns[f"_R_{name}"] = packer.unpack_from
        ns[f"_W_{name}"] = packer.pack_into
        ns[f"_P_{name}"] = packer.pack
    ns["_R_bool"] = PACKERS["bool"].unpack_from

    def stackid(storage, flags, lineno):
        user = bool(flags & (1 << 8))
        stack = state.user_stack if user else state.stack
        if stack is None:
            what = "user_stack" if user else "stack"
            raise SimulationError(f"get_stackid() reads the {'user' if user else 'kernel'} stack, which the test did "
                                  f"not give: sim.set({what}=[addresses, innermost first])", lineno)
        return storage.get_stackid(stack, flags)
    ns["_stackid"] = stackid

    def read_memory(buf, off, size, address, string, lineno):
        data = state.memory.read(address, size, string, lineno)
        if string:
            buf[off:off + size] = bytes(size)      # the translator zeroes the tail first
        buf[off:off + len(data)] = data
        return len(data) if string else 0

    def load(address, reader, size, lineno):
        return reader(state.memory.read(address, size, False, lineno), 0)[0]

    def copy_bytes(buf, off, size, data, string):
        if string:
            buf[off:off + size] = bytes(size)
            data = data.split(b"\0", 1)[0][: size - 1] + b"\0"
        else:
            data = data[:size]
        buf[off:off + len(data)] = data
        return len(data) if string else 0

    def task(lineno):
        if state.task is None:
            raise SimulationError("current_task() reads the current task_struct: give the fields the handler "
                                  "reads with sim.set(task={...})", lineno)
        return state.task

    def usdt_arg(ctx, n, lineno):
        args = ctx.get("usdt_args", ())
        if n > len(args):
            raise SimulationError(f"usdt_arg(ctx, {n}): the event gave {len(args)} USDT arguments "
                                  "(pass usdt_args=[...])", lineno)
        value = args[n - 1]
        if isinstance(value, (bytes, str)):
            return state.memory.place(value)
        return int(value)

    from pyprobe.sim.packets import payload_startswith

    ns.update(_payload_startswith=payload_startswith,
              _bswap=lambda v, size: int.from_bytes(v.to_bytes(size, "little"), "big"), _load=load, _read_memory=read_memory, _copy_bytes=copy_bytes, _task=task, _usdt_arg=usdt_arg)
    return ns
