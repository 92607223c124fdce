"""compactsnoop: a write to /proc/sys/vm/compact_memory compacts every populated zone of every
node, one pass each, in the writer's own context: the records are exactly those zones, in order
(/proc/zoneinfo), each the writer's, order -1 (the whole zone), synchronous, with a status of the
kernel's enum compact_result and, with -K, a stack through the sysctl's handler."""
import os

from tool_workloads import Gated, Tool, json_lines, set_comm


def compact():
    set_comm("compact_wr")
    with open("/proc/sys/vm/compact_memory", "w") as f:
        f.write("1")


def populated_zones() -> list[tuple[int, str]]:
    from pyprobe.tools.compactsnoop import zones

    return [zone for _, zone in sorted(zones().items())]


def test_compactsnoop_sees_each_zone_compacted():
    from pyprobe.tools.compactsnoop import CompactSnoop, passes, status_names

    writer = Gated(compact)
    with CompactSnoop(target_pid=writer.pid, kernel_stack=True) as prog:
        assert writer.go() == 0
        records = passes(prog.events.drain(), prog)
    expected = populated_zones()
    assert len(expected) >= 1
    assert [(r["node"], r["zone"]) for r in records] == expected
    assert {(r["comm"], r["pid"], r["tid"], r["order"], r["sync"]) for r in records} == \
        {("compact_wr", writer.pid, writer.pid, -1, True)}
    assert {r["status"] for r in records} <= set(status_names().values())
    for r in records:
        names = [f.split("+")[0] for f in r["stack"]]
        assert "compact_node" in names and "sysctl_compaction_handler" in names, r["stack"]


def test_compactsnoop_command_columns_and_json():
    expected = populated_zones()
    writer = Gated(compact)
    tool = Tool("compactsnoop", "-T", "-p", str(writer.pid))
    assert writer.go() == 0
    out = tool.stop().splitlines()
    assert out[0].split() == ["TIME(s)", "COMM", "PID", "NODE", "ZONE", "ORDER", "MODE", "LAT(ms)", "STATUS"]
    rows = [line.split() for line in out[1:]]
    assert [(int(r[3]), r[4]) for r in rows] == [(node, "ZONE_" + zone.upper()) for node, zone in expected]
    assert {(r[1], int(r[2]), r[5], r[6]) for r in rows} == {("compact_wr", writer.pid, "-1", "SYNC")}
    assert float(rows[0][0]) == 0.0

    writer = Gated(compact)
    tool = Tool("compactsnoop", "--json", "-K", "-p", str(writer.pid))
    assert writer.go() == 0
    records = json_lines(tool.stop())
    assert [(r["node"], r["zone"], r["pid"]) for r in records] == [(n, z, writer.pid) for n, z in expected]
    assert all(any(f.startswith("compact_node+") for f in r["stack"]) for r in records)
