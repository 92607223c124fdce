"""runqlat: run queue (scheduler) latency, from a task's wakeup to its running, as a histogram.

As bcc's tool: sched_wakeup and sched_wakeup_new stamp the woken task; a task
preempted while runnable is stamped at sched_switch; when sched_switch puts a
task on the CPU, the time since its stamp is counted. The BTF tracepoints
(tp_btf) give the tasks themselves, so -p filters by process in the kernel;
-P and -L give a histogram per process or thread, --pidnss one per PID namespace
(the namespace the task's pid lives in, as `stat -L -c %i /proc/PID/ns/pid` names it).

    from pyprobe.tools.runqlat import RunqLat
    with RunqLat(target_pid=1234) as prog:
        ...
    prog.dist.to_numpy()     # counts by log2 slot (microseconds)
"""
from __future__ import annotations

from pyprobe import Hash, Histogram, Param, Program, Struct, tp_btf, u32, u64
from pyprobe.bpf import ktime_ns, log2
from pyprobe.tools import common

EXAMPLES = """examples:
    pyprobe runqlat            # summarize run queue latency as a histogram
    pyprobe runqlat 1 10       # print 1 second summaries, 10 times
    pyprobe runqlat -mT 1      # 1s summaries, milliseconds, and timestamps
    pyprobe runqlat -P         # show each PID separately
    pyprobe runqlat -p 185     # trace PID 185 only
    pyprobe runqlat --pidnss   # show each PID namespace separately
"""

TASK_RUNNING = 0
PER_PROCESS, PER_THREAD, PER_PIDNS = 1, 2, 3


class PidKey(Struct):
    pid: u32
    slot: u64


class RunqLat(Program):
    factor = Param(u64, default=1000)    # ns per unit
    target_pid = Param(u32)              # a process (tgid); 0: all
    per = Param(u32)                     # 0: one histogram; PER_PROCESS; PER_THREAD; PER_PIDNS
    start = Hash(u32, u64, max_entries=10240)
    dist = Histogram()
    pid_dist = Histogram(PidKey)

    @tp_btf("sched_wakeup")
    @tp_btf("sched_wakeup_new")
    def on_wakeup(self, ctx, p):
        if p.pid == 0:
            return
        if self.target_pid and p.tgid != self.target_pid:
            return
        self.start[p.pid] = ktime_ns()

    @tp_btf("sched_switch")
    def on_switch(self, ctx, preempt, prev, next):
        # preempted (even on its way to sleep) or still runnable: it waits on the run queue again
        if (preempt or prev.__state == TASK_RUNNING) and prev.pid != 0:
            if not self.target_pid or prev.tgid == self.target_pid:
                self.start[prev.pid] = ktime_ns()
        tid: u32 = next.pid
        ts = self.start.get(tid)
        if ts is None:
            return
        delta = (ktime_ns() - ts) // self.factor
        if self.per:
            key = PidKey()
            if self.per == PER_PIDNS:
                # the namespace the pid lives in: its last level (the kernel's task_active_pid_ns();
                # bcc keys by the task switched out, which is not the one that waited)
                pid = next.thread_pid
                level: u32 = pid.level
                key.pid = pid.numbers[level].ns.ns.inum
            else:
                key.pid = next.tgid if self.per == PER_PROCESS else tid
            key.slot = log2(delta)
            self.pid_dist[key] += 1
        else:
            self.dist.increment(log2(delta))
        del self.start[tid]


def main(argv=None, prog=None) -> int:
    p = common.parser(prog, "Summarize run queue (scheduler) latency as a histogram", EXAMPLES)
    p.add_argument("-T", "--timestamp", action="store_true", help="include timestamp on output")
    p.add_argument("-m", "--milliseconds", action="store_true", help="millisecond histogram")
    p.add_argument("-P", "--pids", action="store_true", help="print a histogram per process ID")
    p.add_argument("--pidnss", action="store_true", help="print a histogram per PID namespace")
    p.add_argument("-L", "--tids", action="store_true", help="print a histogram per thread ID")
    p.add_argument("-p", "--pid", type=common.positive_int, help="trace this PID only")
    common.add_interval(p)
    common.add_duration(p)
    args = p.parse_args(argv)
    label = "msecs" if args.milliseconds else "usecs"
    per = PER_PROCESS if args.pids else PER_PIDNS if args.pidnss else PER_THREAD if args.tids else 0

    def trace():
        with common.opened(args, RunqLat(factor=1000000 if args.milliseconds else 1000, target_pid=args.pid or 0, per=per)) as tool:
            common.announce(tool)
            if not args.json:
                print("Tracing run queue latency... Hit Ctrl-C to end.", flush=True)
            dist = tool.pid_dist if per else tool.dist
            section = {PER_PROCESS: "pid", PER_THREAD: "tid", PER_PIDNS: "pidns"}.get(per, "")
            common.intervals(args.interval, args.count, args.duration,
                             lambda: common.report_histogram(dist, label, args.json, section, timestamp=args.timestamp))

    return common.run(trace)
