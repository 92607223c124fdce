"""bcc tests/python test_array, test_lpm_trie (v4), test_stackid, test_debuginfo (ksym,
ksymname), test_uprobes (library, binary), test_tracepoint, test_usdt, test_percpu's
helper test, test_ringbuf's consume and test_bpf_log, ported with this kernel's probes (tracepoints and uprobes where bcc used
kprobes for a map behaviour): each with its own workload and exact values."""
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from pyprobe import (Array, Hash, LpmTrie, Param, PerCpuArray, PerfBuf, Program, StackTrace, Struct, VerifierError,
                     char, ksym, ksymname, s32, syscall, tc_ingress, tracepoint, u8, u32, u64, uprobe, usdt)
from pyprobe.bpf import TC_ACT_OK, ktime_ns, probe_read_user_str, smp_processor_id, tgid, usdt_arg

from test_bcc_histogram import run

HERE = os.path.dirname(__file__)


class Waiting:
    """A forked child that runs `work` once told to (`go()`, which waits for it to end);
    killed if the test fails before that, so no child is left waiting."""

    def __init__(self, work):
        self.r, self.w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            try:
                os.read(self.r, 1)
                work()
            finally:
                os._exit(0)

    def go(self) -> None:
        os.write(self.w, b"g")
        os.waitpid(self.pid, 0)
        self.pid = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.pid:
            os.kill(self.pid, 9)
            os.waitpid(self.pid, 0)
        os.close(self.r)
        os.close(self.w)


# ---- test_array ------------------------------------------------------------------------

def test_array_simple_and_native_index():
    class Table(Program):
        table1 = Array(u64, 128)

    with Table() as prog:
        t1 = prog.table1
        t1[0] = 100
        t1[-2] = 37                   # from the end, as bcc's arrays
        t1[127] = 1000
        values = dict(t1.items())
        assert len(t1) == 128 and len(values) == 128
        assert (values[0], values[126], values[127]) == (100, 37, 1000)
        assert t1[-2] == 37 and t1[-1] == t1[127] == 1000
        assert sum(values.values()) == 1137                          # every other slot is zero
        del t1[127]                                                  # an array slot "deleted" is zeroed
        assert t1[127] == 0


class Sleeps(Struct):
    ts: u64


class PerfOut(Program):
    target = Param(u32)
    events = PerfBuf(Sleeps)

    @syscall("clock_nanosleep")
    @syscall("nanosleep")
    def on_sleep(self, args):
        if tgid() == self.target:
            e = Sleeps()
            e.ts = ktime_ns()
            self.events.submit(e)


def sleep_five_times_on_one_cpu():
    # one CPU's buffer keeps its records in order; across CPUs a reader sees them per CPU
    os.sched_setaffinity(0, {os.sched_getaffinity(0).pop()})
    for _ in range(5):
        time.sleep(0.001)


def test_perf_buffer_records_each_sleep():
    got = []
    with Waiting(sleep_five_times_on_one_cpu) as child:
        with PerfOut(target=child.pid) as prog:
            prog.events.open(lambda e: got.append(int(e["ts"])))
            child.go()                      # returns when the child has made its 5 sleeps
            deadline = time.monotonic() + 10
            while len(got) < 5 and time.monotonic() < deadline:
                prog.poll(100)              # a loaded machine may deliver them over several polls
            prog.poll(10)
    assert len(got) == 5 and got == sorted(got) and prog.events.lost == 0


# ---- test_lpm_trie (v4) -------------------------------------------------------------------

class KeyV4(Struct):
    prefixlen: u32
    data: u8[4]


def test_lpm_trie_v4_longest_prefix_from_python():
    class Trie(Program):
        trie = LpmTrie(KeyV4, u64, max_entries=16)

    with Trie() as prog:
        trie = prog.trie
        trie[(16, [192, 168, 0, 0])] = 16
        trie[(24, [192, 168, 0, 0])] = 24
        trie[(31, [192, 168, 0, 0])] = 31
        assert trie[(32, [192, 168, 0, 1])] == 31          # the longest prefix holding it
        assert trie[(32, [192, 168, 0, 128])] == 24
        assert trie[(32, [192, 168, 1, 0])] == 16
        with pytest.raises(KeyError):
            trie[(32, [192, 169, 0, 0])]
        assert len(trie) == 3


# ---- test_stackid (kernel stacks) ----------------------------------------------------------

class KernelStacks(Program):
    target = Param(u32)
    stacks = StackTrace(64)
    ids = Hash(u32, u64)

    @syscall("getppid")
    def on(self, args):
        if tgid() == self.target:
            self.ids[u32(self.stacks.get_stackid(args, 0))] += 1


def test_stackid_kernel_stack_walks_to_the_syscall():
    prog, _ = run(KernelStacks, 20)
    items = prog.ids.items()
    assert sum(n for _, n in items) == 20 and len(items) == 1       # one call site, one stack
    (stack_id, _), = items
    names = [ksym(a) for a in prog.stacks.walk(stack_id)]
    assert names and any("do_syscall_64" in n or "x64_sys_call" in n for n in names), names


# ---- test_debuginfo: ksym and ksymname ------------------------------------------------------

def test_ksymname_and_ksym_agree():
    addr = ksymname("vfs_read")
    assert addr > 0 and ksym(addr) == "vfs_read"
    assert ksym(addr, show_offset=True) == "vfs_read+0x0"
    assert ksymname("no_such_function_pyprobe") < 0


# ---- test_uprobes: a library function and a function of a binary -----------------------------

class LibraryCalls(Program):
    target = Param(u32)
    calls = Array(u64, 2)

    @uprobe("c", "getpid")
    def lib_call(self, ctx):
        if tgid() == self.target:
            self.calls[0] += 1


def test_uprobe_on_a_library_function():
    code = "import os, sys; sys.stdin.readline(); [os.getpid() for _ in range(50)]"
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE)
    with LibraryCalls(target=child.pid) as prog:
        child.communicate(b"go\n")
    assert prog.calls[0] == 50


def test_uprobe_on_a_binary_s_own_function(tmp_path):
    src = tmp_path / "app.c"
    src.write_text("#include <stdio.h>\n#include <stdlib.h>\n__attribute__((noinline)) int pp_work(int i) "
                   "{ __asm__ volatile(\"\"); return i * 2; }\nint main(int c, char **v) { char l[8]; "
                   "fgets(l, 8, stdin); int s = 0; for (int i = 0; i < atoi(v[1]); i++) s += pp_work(i); "
                   "printf(\"%d\\n\", s); return 0; }\n")
    exe = str(tmp_path / "app")
    subprocess.run(["gcc", "-O1", "-o", exe, str(src)], check=True)

    class BinaryCalls(Program):
        calls = Array(u64, 1)
        args = Array(u64, 1)

        @uprobe(exe, "pp_work")
        def work(self, ctx):
            self.calls[0] += 1
            self.args[0] += ctx.parm1

    with BinaryCalls() as prog:
        out = subprocess.run([exe, "30"], input=b"go\n", capture_output=True, check=True).stdout
    assert int(out) == 2 * sum(range(30))
    assert (prog.calls[0], prog.args[0]) == (30, sum(range(30)))


# ---- test_tracepoint: fields and __data_loc strings ------------------------------------------

class ExecName(Struct):
    filename: char[64]


class Execs(Program):
    target = Param(u32)
    switches = Hash(u32, u64)
    execs = Hash(u32, ExecName)

    @tracepoint("sched", "sched_switch")
    def on_switch(self, args):
        if args.prev_pid == self.target:
            self.switches[0] += 1

    @tracepoint("sched", "sched_process_exec")
    def on_exec(self, args):
        if args.pid == self.target:
            e = ExecName()
            e.filename = args.filename              # a __data_loc string, read from the record
            self.execs[args.pid] = e


def test_tracepoint_fields_and_data_loc_filename():
    with Waiting(lambda: os.execv("/bin/sleep", ["sleep", "0.05"])) as child:
        pid = child.pid
        with Execs(target=pid) as prog:
            child.go()
    assert prog.execs[pid]["filename"] == b"/bin/sleep"
    assert prog.switches[0] >= 1                # the sleep itself switched the child out


# ---- test_usdt: arguments of several types ------------------------------------------------------

@pytest.fixture(scope="module")
def usdt_points(tmp_path_factory):
    exe = str(tmp_path_factory.mktemp("usdt") / "usdt_points")
    subprocess.run(["gcc", "-O1", "-o", exe, os.path.join(HERE, "usdt_points.c")], check=True)
    return exe


class Text(Struct):
    text: char[16]


def test_usdt_arguments_of_each_type(usdt_points):
    exe = usdt_points

    class Points(Program):
        sums = Array(u64, 8)
        last = Array(Text, 1)

        @usdt(exe, "test:probe_point_1")
        def p1(self, ctx):
            self.sums[0] += usdt_arg(ctx, 1)         # a char ('h')
            self.sums[1] += usdt_arg(ctx, 2)         # an int

        @usdt(exe, "test:probe_point_2")
        def p2(self, ctx):
            self.sums[2] += usdt_arg(ctx, 1)         # a constant
            self.sums[3] += usdt_arg(ctx, 2)         # a char ('k')

        @usdt(exe, "test:probe_point_3")
        def p3(self, ctx):
            self.sums[4] += usdt_arg(ctx, 1) * 1000 + usdt_arg(ctx, 2)

        @usdt(exe, "test:probe_point_4")
        def p4(self, ctx):
            self.sums[5] += usdt_arg(ctx, 1)         # a u64 counter
            t = Text()
            probe_read_user_str(t.text, usdt_arg(ctx, 2))
            self.last[0] = t

    with Points() as prog:
        subprocess.run([exe, "10"], input=b"go\n", check=True)
    sums = prog.sums.to_numpy().tolist()
    assert sums[:6] == [10 * ord("h"), 10 * 40, 10 * 5, 10 * ord("k"), 10 * 200040, sum(range(10))]
    assert prog.last[0]["text"] == b"str9"


# ---- test_percpu: test_helper (each CPU's own slot) ----------------------------------------------

class PerCpuHelper(Program):
    target = Param(u32)
    per_cpu = PerCpuArray(u64, 1)
    seen_cpu = Hash(u32, u64)

    @syscall("getppid")
    def on(self, args):
        if tgid() == self.target:
            self.per_cpu[0] += 1
            self.seen_cpu[smp_processor_id()] += 1


def test_percpu_helper_counts_on_the_cpu_that_ran():
    prog, _ = run(PerCpuHelper, 40)
    per_cpu = np.asarray(prog.per_cpu[0])
    assert per_cpu.sum() == 40
    assert {cpu: int(n) for cpu, n in enumerate(per_cpu) if n} == dict(prog.seen_cpu.items())


# ---- test_ringbuf: test_ringbuf_consume (what is there now, without waiting) ----------------

def test_ringbuf_consume_takes_what_is_there():
    from test_bcc_buffers import Ring

    prog, _ = run(Ring, 6)
    recs = prog.events.drain()                  # bcc's ring_buffer_consume(): no wait
    assert recs["i"].tolist() == [0, 1, 3, 4]
    assert len(prog.events.drain()) == 0
    prog.close()


# ---- test_bpf_log: a long program's verifier log kept whole when it is refused ----------------

class LongLog(Program):
    t1 = Hash(s32, s32, max_entries=10)

    @tc_ingress("lo")
    def sim_port(self, ctx):
        x: s32 = 0
        for i in range(300):
            y = self.t1.get(x)
            if y is None:
                return TC_ACT_OK
            x = y + i
        z = self.t1.get(x)
        self.t1[1] = z                           # unchecked: the verifier refuses it
        return TC_ACT_OK


def test_bpf_log_of_a_refused_long_program_is_whole():
    with pytest.raises(VerifierError) as info:
        LongLog().load()
    e = info.value
    assert "R0 invalid mem access 'map_value_or_null'" in e.log or "invalid mem access 'map_value_or_null'" in e.log
    assert e.log.rstrip().splitlines()[-1].startswith("processed ")      # to its end, not a tail
    assert "map_value_or_null" in e.summary and len(e.log) > 10 * len(e.summary)
