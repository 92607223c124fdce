"""wqlat: a write to /proc/sys/vm/stat_refresh queues refresh_vm_stats on the `events` workqueue
once per online CPU, in the writer's context, and waits for them all: WRITES writes are exactly
WRITES x CPUs work items, each timed once from its queueing to its start."""
import os

from tool_workloads import Gated, Tool, json_lines

WRITES = 7


def refresh():
    for _ in range(WRITES):
        with open("/proc/sys/vm/stat_refresh", "w") as f:
            f.write("1")


def expected() -> int:
    return WRITES * os.sysconf("SC_NPROCESSORS_ONLN")        # schedule_on_each_cpu(): each online CPU


def test_wqlat_times_each_work_item():
    from pyprobe.tools.wqlat import WqLat, only_workqueue, section_name

    writer = Gated(refresh)
    per_function = WqLat(target_pid=writer.pid, per_function=True)
    one_queue = WqLat(target_pid=writer.pid, wq_filter=True, factor=1)
    only_workqueue(one_queue, "events")
    other_queue = WqLat(target_pid=writer.pid, wq_filter=True)
    only_workqueue(other_queue, "events_long")
    with per_function, one_queue, other_queue:
        assert writer.go() == 0
        sections = {section_name(k): int(v.sum()) for k, v in per_function.wq_dist.sections().items()}
        nsecs = one_queue.dist.to_numpy()
        others = int(other_queue.dist.to_numpy().sum())
    # an interrupt over the writer may queue other work in its context: under other names
    assert sections["events refresh_vm_stats"] == expected()
    # -w events (-N): the same items as every `events` section above
    assert int(nsecs.sum()) == sum(n for name, n in sections.items() if name.split()[0] == "events")
    assert others == sum(n for name, n in sections.items() if name.split()[0] == "events_long")


def test_wqlat_command_per_workqueue_json():
    tool = Tool("wqlat", "-W", "--json")
    writer = Gated(refresh)
    assert writer.go() == 0
    records = json_lines(tool.stop())
    events = [r for r in records if r["wqname"] == "events"]
    assert len(events) == 1 and events[0]["unit"] == "usecs"
    assert sum(b["count"] for b in events[0]["buckets"]) >= expected()     # the host's own items too

    tool = Tool("wqlat", "-w", "events", "-N", "-T")
    writer = Gated(refresh)
    assert writer.go() == 0
    out = tool.stop().splitlines()
    assert out[0] == "Tracing work queue request latency time... Hit Ctrl-C to end."
    rows = [line.split() for line in out if "|" in line and "->" in line]
    assert out[3].split() == ["nsecs", ":", "count", "distribution"]
    assert sum(int(r[4]) for r in rows) >= expected()
