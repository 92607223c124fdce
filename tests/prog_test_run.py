"""BPF_PROG_TEST_RUN from tests: run a loaded program once on a context or a packet the test gives
(the differential oracle and the packet lessons' agreement tests use it), and a program's recursion misses."""
import ctypes
import os
import struct

_libc = ctypes.CDLL(None, use_errno=True)
_SYS_BPF = 321            # x86-64
_BPF_PROG_TEST_RUN = 10
_BPF_OBJ_GET_INFO_BY_FD = 15


class _TestRunAttr(ctypes.Structure):
    """union bpf_attr's `test` member (include/uapi/linux/bpf.h)."""
    _fields_ = [("prog_fd", ctypes.c_uint32), ("retval", ctypes.c_uint32), ("data_size_in", ctypes.c_uint32),
                ("data_size_out", ctypes.c_uint32), ("data_in", ctypes.c_uint64), ("data_out", ctypes.c_uint64),
                ("repeat", ctypes.c_uint32), ("duration", ctypes.c_uint32), ("ctx_size_in", ctypes.c_uint32),
                ("ctx_size_out", ctypes.c_uint32), ("ctx_in", ctypes.c_uint64), ("ctx_out", ctypes.c_uint64),
                ("flags", ctypes.c_uint32), ("cpu", ctypes.c_uint32), ("batch_size", ctypes.c_uint32),
                ("_pad", ctypes.c_uint32)]


def _run(attr: _TestRunAttr) -> int:
    if _libc.syscall(_SYS_BPF, _BPF_PROG_TEST_RUN, ctypes.byref(attr), ctypes.sizeof(attr)) < 0:
        e = ctypes.get_errno()
        raise OSError(e, f"BPF_PROG_TEST_RUN: {os.strerror(e)}")
    return attr.retval


def prog_test_run(prog_fd: int, args: list[int]) -> int:
    """Run a raw tracepoint program once on this CPU with ctx->args = args; its return value."""
    ctx = (ctypes.c_uint64 * 12)(*args)
    return _run(_TestRunAttr(prog_fd=prog_fd, ctx_size_in=ctypes.sizeof(ctx), ctx_in=ctypes.addressof(ctx)))


def packet_test_run(prog_fd: int, data: bytes, out: list | None = None) -> int:
    """Run a packet program (XDP, tc, socket filter, cgroup skb) once on `data`, an ethernet frame;
    its verdict as a C int (and the packet as it left appended to `out`)."""
    buf = ctypes.create_string_buffer(data, len(data))
    out_buf = ctypes.create_string_buffer(len(data) + 256)
    attr = _TestRunAttr(prog_fd=prog_fd, data_size_in=len(data), data_in=ctypes.addressof(buf),
                        data_size_out=len(out_buf), data_out=ctypes.addressof(out_buf))
    verdict = ctypes.c_int32(_run(attr)).value
    if out is not None:
        out.append(out_buf.raw[:attr.data_size_out])
    return verdict


def prog_fd(prog, handler: str) -> int:
    """The fd of a loaded Program's handler."""
    from pyprobe.backend.libbpf import lib

    session = prog._session
    info = next(p for p in session.source.programs if p.handler == handler)
    return lib.bpf_program__fd(lib.bpf_object__find_program_by_name(session.obj, info.c_name.encode()))


def recursion_misses(fd: int) -> int:
    """bpf_prog_info.recursion_misses: the events the kernel did not run this program on because it
    was already running on that CPU (BPF_OBJ_GET_INFO_BY_FD; the field is at byte 208 of the UAPI struct)."""
    info = ctypes.create_string_buffer(232)
    attr = struct.pack("IIQ", fd, len(info), ctypes.addressof(info)) + bytes(104)
    buf = ctypes.create_string_buffer(attr, len(attr))
    if _libc.syscall(_SYS_BPF, _BPF_OBJ_GET_INFO_BY_FD, buf, len(attr)) < 0:
        raise OSError(ctypes.get_errno(), "BPF_OBJ_GET_INFO_BY_FD")
    return struct.unpack_from("Q", info.raw, 208)[0]
