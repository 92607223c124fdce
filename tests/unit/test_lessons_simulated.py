"""Every lesson, simulated (no root, no kernel): the events its kernel test's workload makes, given to
Program.simulate(), and the same results asserted as the kernel test asserts
(tests/kernel/test_lessons_1_5.py, test_lessons_6_16.py). docs/testing.md walks through them.
"""
import importlib.util
import os

import pytest

LESSONS = os.path.join(os.path.dirname(__file__), "..", "..", "lessons")
SYNC_GAPS = [0, 0.2, 0.2, 1.2, 0.2]          # the kernel tests' sync workload: quick, quick, slow, quick
MS = 1_000_000


def lesson(name: str):
    spec = importlib.util.spec_from_file_location(f"lesson_{name}", os.path.join(LESSONS, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sync_events(sim, handler):
    """The sync workload: a sync after each gap; returns the 1-based indexes of the quick ones."""
    for gap in SYNC_GAPS:
        sim.advance(int(gap * 1000) * MS)
        handler()
    return [i + 1 for i, gap in enumerate(SYNC_GAPS) if i and gap < 1]


def test_hello_world_and_hello_fields_print_a_line_per_clone(simulate):
    for name, cls in (("hello_world", "HelloWorld"), ("hello_fields", "HelloFields")):
        sim = simulate(getattr(lesson(name), cls))
        for _ in range(3):
            sim.hello()
        assert sim.trace == ["Hello, World!"] * 3


def test_hello_world_kprobe_spelling_prints_the_same(simulate):
    sim = simulate(lesson("hello_world").HelloWorldKprobe)
    sim.hello()
    assert sim.trace == ["Hello, World!"]


def test_sys_sync_prints_one_line_per_sync(simulate):
    sim = simulate(lesson("sys_sync").SysSync)
    for _ in range(4):
        sim.on_sync()
    assert sim.trace == ["sys_sync() called"] * 4


def test_sync_timing_reports_quick_syncs(simulate):
    sim = simulate(lesson("sync_timing").SyncTiming)
    quick = sync_events(sim, sim.do_trace)
    assert sim.trace == [str(int(SYNC_GAPS[i - 1] * 1000)) for i in quick]     # ms since the sync before


def test_sync_count_counts_every_sync(simulate):
    sim = simulate(lesson("sync_count").SyncCount)
    quick = sync_events(sim, sim.do_trace)
    assert [int(line.split()[1]) for line in sim.trace] == quick               # the count, at each quick sync
    assert sim.last[1] == len(SYNC_GAPS)


def test_sync_perf_output_sends_a_record_per_quick_sync(simulate):
    sim = simulate(lesson("sync_perf_output").SyncPerfOutput)
    quick = sync_events(sim, sim.do_trace)
    (records,) = list(sim.events.batches())
    assert records["ms"].tolist() == [int(SYNC_GAPS[i - 1] * 1000) for i in quick]


def test_hello_perf_output_sends_pid_and_comm(simulate):
    sim = simulate(lesson("hello_perf_output").HelloPerfOutput)
    sim.set(tgid=321, comm="python3-workload-longer")
    sim.hello()
    sim.hello()
    (records,) = list(sim.events.batches())
    assert records["pid"].tolist() == [321, 321] and records["comm"].tolist() == [b"python3-workload"[:15]] * 2


def test_sleepsnoop_sends_a_record_per_sleep(simulate):
    for cls in ("SleepSnoop", "SleepSnoopKprobe"):
        sim = simulate(getattr(lesson("sleepsnoop"), cls))
        sim.set(tgid=55)
        for _ in range(10):
            sim.advance(50 * MS)
            sim.sleep()
        (records,) = list(sim.events.batches())
        assert records["pid"].tolist() == [55] * 10
        assert (records["ts"][1:] - records["ts"][:-1]).tolist() == [50_000] * 9      # microseconds


def block_io(sim, start, done, sizes, latency_us, kprobes=False):
    """Direct I/Os of the given sizes, each completing latency_us after it was issued."""
    for n, size in enumerate(sizes):
        sector = 2048 + 8 * n
        if kprobes:
            rq = {"__sector": sector, "__data_len": size, "cmd_flags": 1,
                  "q": {"disk": {"major": 8, "first_minor": 16}}}
            start(rq)
            sim.advance(latency_us * 1000)
            done(rq)
        else:
            start(dev=(8 << 20) | 16, sector=sector, bytes=size, nr_sector=size // 512, rwbs="W")
            sim.advance(latency_us * 1000)
            done(dev=(8 << 20) | 16, sector=sector, nr_sector=size // 512, rwbs="W")


def test_biolatency_counts_every_direct_io(simulate, capsys):
    bio = lesson("biolatency")
    for cls in (bio.BioLatency, bio.BioLatencyKprobes):
        sim = simulate(cls, factor=1000)
        block_io(sim, sim.trace_req_start, sim.trace_req_done, [4096] * 6, 300, kprobes=cls is bio.BioLatencyKprobes)
        counts = sim.dist.to_numpy()
        assert counts.sum() == 6 and counts[9] == 6                  # 300 us: the 256 -> 511 slot
        assert len(sim.start) == 0
    sim = simulate(bio.BioLatency, factor=1000, per_disk=1)
    block_io(sim, sim.trace_req_start, sim.trace_req_done, [4096] * 3, 40)
    assert {k: v[6] for k, v in sim.disk_dist.sections().items()} == {(8 << 20) | 16: 3}
    sim.disk_dist.print_log2_hist("usecs", "disk")
    assert "disk = " in capsys.readouterr().out


def test_bitehist_counts_io_sizes_in_kbytes(simulate):
    bite = lesson("bitehist")
    sim = simulate(bite.BiteHist)
    for size in (4096, 4096, 65536, 1 << 20):
        sim.count(bytes=size)
    counts = sim.dist.to_numpy()
    assert (counts[3], counts[7], counts[11]) == (2, 1, 1)        # 4 KiB, 64 KiB, 1 MiB
    sim = simulate(bite.BiteHistKprobe)
    sim.count(0xFFFF888012345600, 8192)                           # (req, bytes): untyped where BTF lacks it
    assert sim.dist.to_numpy()[4] == 1


def test_disklatency_counts_every_direct_read(simulate):
    disk = lesson("disklatency")
    for cls in (disk.DiskLatency, disk.DiskLatencyKprobes):
        sim = simulate(cls)
        if cls is disk.DiskLatencyKprobes:
            for n in range(5):
                sim.trace_start(0xFFFF0000 + 64 * n)
                sim.advance(2_000_000)
                sim.trace_completion(0xFFFF0000 + 64 * n)
        else:
            block_io(sim, sim.trace_start, sim.trace_completion, [4096] * 5, 2000)
        assert sim.iolatency.to_numpy()[11] == 5 and len(sim.start) == 0      # 2000 us


def test_disksnoop_prints_each_io(simulate):
    snoop = lesson("disksnoop")
    sim = simulate(snoop.DiskSnoop)
    block_io(sim, sim.trace_start, sim.trace_completion, [4096, 8192], 1500)
    assert sim.trace == ["4096 W 1500", "8192 W 1500"]
    sim = simulate(snoop.DiskSnoopKprobes)
    block_io(sim, sim.trace_start, sim.trace_completion, [4096], 1500, kprobes=True)
    assert [snoop.DiskSnoopKprobes.io_type(*line.split()[1::-1]) for line in sim.trace] == ["W"]
    fixed = lesson("disksnoop_fixed")
    sim = simulate(fixed.DiskSnoopFixed)
    block_io(sim, sim.trace_start, sim.trace_completion, [512, 4096], 250)
    assert sim.trace == ["512 W 250", "4096 W 250"]


def test_vfsreadlat_histogram_shows_slow_and_fast_reads(simulate):
    vfs = lesson("vfsreadlat")
    for cls in (vfs.VfsReadLat, vfs.VfsReadLatKprobes):
        sim = simulate(cls)
        for us in (1, 1, 1, 5000):
            sim.do_entry()
            sim.advance(us * 1000)
            sim.do_return()
        counts = sim.dist.to_numpy()
        assert counts[1] == 3 and counts[13] == 1                    # 1 us and 5 ms


def test_urandomread_reports_bits_asked(simulate):
    urandom = lesson("urandomread")
    sim = simulate(urandom.UrandomRead)
    sim.printarg(got_bits=128)
    assert sim.trace == ["128"]
    sim = simulate(urandom.UrandomReadSyscalls)
    sim.set(tgid=7, tid=7)
    sim.on_getrandom(len=16)
    sim.on_openat(filename="/dev/urandom")
    sim.on_openat_return(ret=5)
    sim.on_dup(oldfd=5, newfd=0)                                  # dd moves its input to fd 0
    sim.on_read(fd=0, count=32)
    sim.on_read(fd=3, count=99)                                   # another file: not reported
    sim.on_close(fd=5)
    sim.on_close(fd=0)
    assert sim.trace == ["128", "256"] and len(sim.urandom) == 0


def test_strlen_count_counts_a_known_string(simulate):
    strlen = lesson("strlen_count")
    sim = simulate(strlen.StrlenCount, target=42)
    sim.set(tgid=42)
    for _ in range(7):
        sim.count(b"pyprobe-known-string\0")
    sim.count(0)                                                  # strlen(NULL) is not read
    sim.set(tgid=43)
    sim.count(b"another process\0")                               # -p 42: not counted
    assert [(bytes(k["c"]).rstrip(b"\0"), v) for k, v in sim.counts.items()] == [(b"pyprobe-known-string", 7)]


def test_task_switch_counts_switches_between_two_processes(simulate):
    ts = lesson("task_switch")
    sim = simulate(ts.TaskSwitch)
    for _ in range(10):
        sim.count_sched(prev_pid=100, next_pid=200)
        sim.count_sched(prev_pid=200, next_pid=100)
    assert sorted((int(k["prev_pid"]), int(k["curr_pid"]), v) for k, v in sim.stats.items()) == \
        [(100, 200, 10), (200, 100, 10)]
    sim = simulate(ts.TaskSwitchKprobe)
    sim.set(tid=200)
    sim.count_sched({"pid": 100})
    assert [(int(k["prev_pid"]), int(k["curr_pid"]), v) for k, v in sim.stats.items()] == [(100, 200, 1)]


def test_nodejs_and_python_usdt_programs_read_their_arguments(simulate):
    usdt = lesson("nodejs_http_server")
    sim = simulate(usdt.python_program(1234))
    sim.do_trace(usdt_args=["/srv/app.py", "handle", 17])
    assert sim.trace == ["function:handle file:/srv/app.py line:17"]
    sim = simulate(usdt.node_program(1234))
    sim.do_trace(usdt_args=[0, 0, 0, 0, 0, "/index.html"])
    assert sim.trace == ["path:/index.html"]


def test_a_missing_kernel_member_names_the_lesson_line(simulate):
    from pyprobe import SimulationError

    sim = simulate(lesson("biolatency").BioLatencyKprobes, factor=1000)
    with pytest.raises(SimulationError, match=r"biolatency.py:\d+:.*rq.q is kernel data the test did not give"):
        sim.trace_req_start(rq={"__sector": 1})
