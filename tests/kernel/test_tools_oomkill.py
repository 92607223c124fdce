"""oomkill: a kill the OOM killer makes in a memory cgroup of the test's own, exactly.

The cgroup is limited to 96 MiB. A victim (oom_score_adj 1000, uid 4321) holds 64 MiB in it;
then a trigger (its adj unchanged: the victim's 1000 outweighs any size) touches 48 MiB there,
and the fault that passes the limit runs the OOM killer in the trigger's context, which kills
the victim: one record, naming both processes, the victim's uid, adj and memory, and the
trigger's user stack through touch_pages().

Why these sizes: the exiting victim hides from the OOM killer (MMF_OOM_SKIP) once its pages are
unmapped, but the last ~9,700 of them (the unmap's batches) are uncharged only after that. With
24 MiB (6,144 pages) all of them were still charged, and the trigger's next retry found no
victim but itself (seen: a second kill, of the trigger). With 64 MiB, ~26 MiB are uncharged
before the victim hides, more than the 16 MiB the trigger still needs."""
import os
import signal

import pytest

from tool_workloads import MemoryCgroup, Started, Tool, build_c

LIMIT = 96 << 20
VICTIM_MIB = 64
TRIGGER_MIB = 48


@pytest.fixture(scope="module")
def oom_app(tmp_path_factory):
    return build_c("oom_app.c", tmp_path_factory.mktemp("oom"), "-fno-omit-frame-pointer")


class OomKillWorkload:
    """The victim and the trigger, each in the cgroup and at its gate; kill() runs the trigger."""

    def __init__(self, app: str):
        lacking = MemoryCgroup.missing()
        if lacking:
            pytest.skip(f"missing capability: {lacking}")
        self.cgroup = MemoryCgroup(LIMIT)
        self.killed = False
        try:
            self.victim = Started([app, "victim", str(VICTIM_MIB)])
            self.trigger = Started([app, "trigger", str(TRIGGER_MIB)])
            self.cgroup.add(self.victim.pid)
            self.cgroup.add(self.trigger.pid)
            self.victim.run()                 # holds its 64 MiB
        except BaseException:
            self.close()
            raise

    def kill(self) -> None:
        """The trigger's work; it stays alive (its stack can be named in its process) until close()."""
        self.trigger.run()                # the OOM kill happens in its fault, then it finishes
        assert self.victim.proc.wait(timeout=30) == -signal.SIGKILL
        self.killed = True

    def close(self) -> None:
        try:
            if self.killed:
                self.trigger.close()
        finally:
            for p in [w.proc for w in (getattr(self, "victim", None), getattr(self, "trigger", None)) if w]:
                if p.poll() is None:
                    p.kill()
                    p.wait()
            self.cgroup.close()           # whatever failed above: the cgroup is removed


def check(kill: dict, work: OomKillWorkload) -> None:
    assert (kill["fpid"], kill["fcomm"], kill["tpid"], kill["tcomm"]) == \
        (work.trigger.pid, "oom_trigger", work.victim.pid, "oom_victim")
    assert (kill["uid"], kill["oom_score_adj"]) == (4321, 1000)
    assert kill["anon_rss_kb"] >= VICTIM_MIB << 10             # what it touched, at least
    assert kill["total_vm_kb"] >= kill["anon_rss_kb"] + kill["file_rss_kb"]
    assert kill["stack"] and kill["stack"][0].startswith("touch_pages"), kill["stack"]


def test_oomkill_names_trigger_victim_and_stack(oom_app):
    from pyprobe.tools.oomkill import OomKill, choose, kills

    assert choose() is OomKill                    # 6.18's record names the victim
    work = OomKillWorkload(oom_app)
    try:
        with OomKill() as prog:
            work.kill()
            seen = [k for k in kills(prog) if k["fpid"] == work.trigger.pid or k["tpid"] == work.victim.pid]
    finally:
        work.close()
    assert len(seen) == 1, seen
    check(seen[0], work)


def test_oomkill_pid_only_record(oom_app):
    """The older record's class (the pid alone) on the same kill: the pids exact, the victim unnamed
    by the kernel (its /proc entry is gone by the time it is read, or still there naming it)."""
    from pyprobe.tools.oomkill import OomKillPid, kill_dict

    work = OomKillWorkload(oom_app)
    try:
        with OomKillPid() as prog:
            work.kill()
            seen = [kill_dict(prog, e) for e in prog.events.drain() if int(e["fpid"]) == work.trigger.pid]
    finally:
        work.close()
    assert [(k["fpid"], k["fcomm"], k["tpid"]) for k in seen] == [(work.trigger.pid, "oom_trigger", work.victim.pid)]
    assert seen[0]["tcomm"] in ("oom_victim", "?")
    assert seen[0]["stack"][0].startswith("touch_pages")


def test_oomkill_command(oom_app):
    work = OomKillWorkload(oom_app)
    try:
        tool = Tool("oomkill")
        work.kill()
        out = tool.stop().splitlines()
        work_json = OomKillWorkload(oom_app)
        try:
            tool = Tool("oomkill", "--json")
            work_json.kill()
            import json
            records = [json.loads(line) for line in tool.stop().splitlines()]
        finally:
            work_json.close()
    finally:
        work.close()
    assert out[0] == "Tracing OOM kills... Ctrl-C to stop."
    ours = [i for i, line in enumerate(out) if f'Triggered by PID {work.trigger.pid} ("oom_trigger")' in line]
    assert len(ours) == 1, out
    line = out[ours[0]]
    head = f'Triggered by PID {work.trigger.pid} ("oom_trigger"), OOM kill of PID {work.victim.pid} ("oom_victim"), '
    assert line.split(" ", 1)[1].startswith(head), line
    pages = int(line.split(head)[1].split(" pages")[0])
    assert pages >= (VICTIM_MIB << 20) // os.sysconf("SC_PAGE_SIZE")
    assert out[ours[0] + 1] == "  Stack trace:"
    assert out[ours[0] + 2].startswith("    touch_pages"), out
    mine = [r for r in records if r["fpid"] == work_json.trigger.pid]
    assert len(mine) == 1, records
    check(mine[0], work_json)
