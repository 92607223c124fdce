"""bcc's BPF_ITER (bcc has no test of its own for it): @iterator handlers run by reading them.
A task iterator finds the test's own child by pid, parent and comm; a tcp iterator finds the
test's listening socket and both ends of one connection, with their states and ports; a map
iterator reads back every entry of a Hash (in the qemu kernels: this host refuses it)."""
import os
import socket
import subprocess

import pytest

from pyprobe import BPFError, Hash, Program, PyprobeError, Struct, iterator, u8, u16, u32, u64, char
from pyprobe.backend import features
from pyprobe.bpf import seq_printf, seq_write


class TaskRec(Struct):
    pid: u32
    tid: u32
    ppid: u32
    comm: char[16]


class Tasks(Program):
    @iterator("task")
    def tasks(self, ctx, task):
        r = TaskRec()
        r.pid = task.tgid
        r.tid = task.pid
        r.ppid = task.real_parent.tgid
        r.comm = task.comm
        seq_write(ctx, r)

    @iterator("task")
    def lines(self, ctx, task):
        if task.pid == task.tgid:            # one line per process, as ps
            seq_printf(ctx, "%d %d %s\n", task.tgid, task.real_parent.tgid, task.comm)


def test_task_iterator_finds_the_child_by_pid_and_comm():
    child = subprocess.Popen(["sleep", "60"])          # not os.fork(): it would share this process's pipes
    try:
        with Tasks() as prog:
            first, second = prog.tasks.read(TaskRec), prog.tasks.read(TaskRec)     # each read is a new pass
            raw = prog.tasks.read()
            text = prog.lines.read().decode()
            with pytest.raises(PyprobeError, match="not a whole number of"):
                prog.tasks.read(u8[4093])         # prime: 28-byte records fill it only with 4093 tasks
    finally:
        child.kill()
        child.wait()
    for recs in (first, second):
        mine = recs[recs["pid"] == child.pid]
        assert len(mine) == 1
        assert (int(mine[0]["tid"]), int(mine[0]["ppid"]), bytes(mine[0]["comm"])) == (child.pid, os.getpid(), b"sleep")
        assert len(recs[recs["pid"] == os.getpid()]) >= 1 and len(recs) > 10
    assert isinstance(raw, bytes) and len(raw) % TaskRec.__pp_type__.size == 0
    assert [line for line in text.splitlines() if line.split()[0] == str(child.pid)] == \
        [f"{child.pid} {os.getpid()} sleep"]
    with pytest.raises(PyprobeError, match="the iterator is not attached"):
        Tasks().tasks.read()


class TcpRec(Struct):
    family: u16
    state: u8
    local_port: u16           # host order (skc_num)
    remote_port: u16          # network order, as the kernel keeps it (skc_dport)
    uid: u32


class TcpSockets(Program):
    @iterator("tcp")
    def socks(self, ctx, sk_common, uid):
        r = TcpRec()
        r.family = sk_common.skc_family
        r.state = sk_common.skc_state
        r.local_port = sk_common.skc_num
        r.remote_port = sk_common.skc_dport
        r.uid = uid
        seq_write(ctx, r)


TCP_ESTABLISHED, TCP_LISTEN = 1, 10


def test_tcp_iterator_sees_a_listener_and_both_ends_of_a_connection():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)) as client:
            server, _ = listener.accept()
            with server, TcpSockets() as prog:
                recs = prog.socks.read(TcpRec)
            client_port = client.getsockname()[1]
    ours = {(int(r["state"]), int(r["local_port"]), socket.ntohs(int(r["remote_port"])), int(r["uid"]))
            for r in recs if port in (int(r["local_port"]), socket.ntohs(int(r["remote_port"])))}
    assert ours == {(TCP_LISTEN, port, 0, os.getuid()), (TCP_ESTABLISHED, port, client_port, os.getuid()),
                    (TCP_ESTABLISHED, client_port, port, os.getuid())}
    assert {int(r["family"]) for r in recs if int(r["local_port"]) == port} == {socket.AF_INET}


class Entry(Struct):
    key: u32
    value: u64


class Elements(Program):
    counts = Hash(u32, u64)

    @iterator("bpf_map_elem", map="counts")
    def elems(self, ctx, key, value):
        e = Entry()
        e.key = key
        e.value = value
        seq_write(ctx, e)


@pytest.mark.kernel_matrix
def test_map_element_iterator_walks_every_entry():
    if not features.has("map_iterators"):
        with pytest.raises(BPFError, match="elems: this kernel refuses iterators over a map's elements"):
            Elements().load()
        pytest.skip("missing capability: map element iterators (EPERM loading bpf_iter_bpf_map_elem, "
                    "pyprobe doctor: map_iterators); runs in the qemu kernel matrix")
    with Elements() as prog:
        prog.counts.update({k: k * 10 + 1 for k in range(50)})
        recs = prog.elems.read(Entry)
        assert sorted((int(r["key"]), int(r["value"])) for r in recs) == [(k, k * 10 + 1) for k in range(50)]
        del prog.counts[7]
        assert len(prog.elems.read(Entry)) == 49
