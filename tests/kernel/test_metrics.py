"""The Prometheus exporter: `pyprobe serve` scraped by a real Prometheus server, and
the exposition itself (labels, histograms, lost-record counters, several programs)."""
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import urllib.parse
import urllib.request

import pytest

from pyprobe import Hash, Histogram, Param, PerCpuHash, Program, RingBuf, Struct, char, syscall, u32, u64
from pyprobe.bpf import comm, log2, tgid

pytest.importorskip("prometheus_client", reason="the exporter needs prometheus-client: pip install pyprobe[prometheus]")

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROMETHEUS = shutil.which("prometheus")

SERVED = textwrap.dedent('''
    from pyprobe import Hash, Histogram, Program, syscall, u32, u64
    from pyprobe.bpf import log2, tgid

    class Getppids(Program):
        calls = Hash(u32, u64)
        sizes = Histogram()

        @syscall("getppid")
        def on(self, args):
            self.calls[tgid()] += 1
            self.sizes.increment(log2(tgid() % 16))
''')

OTHER = textwrap.dedent('''
    from pyprobe import Array, Program, syscall, u64

    class Syncs(Program):
        syncs = Array(u64, 1)

        @syscall("sync")
        def on(self, args):
            self.syncs[0] += 1
''')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_calls(n: int, call=os.getppid) -> int:
    pid = os.fork()
    if pid == 0:
        for _ in range(n):
            call()
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read().decode()


@pytest.fixture
def serve(tmp_path):
    """Start `pyprobe serve ARGS...`; returns its /metrics URL once it listens."""
    procs = []

    def start(*args):
        env = dict(os.environ, PYTHONPATH=REPO)
        p = subprocess.Popen([sys.executable, "-m", "pyprobe", "serve", "--addr", "127.0.0.1", "--port", "0", *args],
                             stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
        procs.append(p)
        line = p.stderr.readline()
        assert " at http://" in line, line + p.stderr.read()
        return line.rsplit(" at ", 1)[1].strip()

    yield start
    for p in procs:
        p.terminate()
        assert p.wait(timeout=30) == 0, p.stderr.read()    # SIGTERM: detached, closed, exit 0


@pytest.mark.skipif(PROMETHEUS is None, reason="needs Prometheus' server (Debian package prometheus)")
def test_prometheus_scrapes_the_exact_count_of_a_workloads_syscalls(serve, tmp_path):
    (tmp_path / "getppids.py").write_text(SERVED)
    target = urllib.parse.urlparse(serve("getppids.py"))
    port = free_port()
    (tmp_path / "prometheus.yml").write_text(textwrap.dedent(f'''
        global:
          scrape_interval: 200ms
          scrape_timeout: 150ms
        scrape_configs:
          - job_name: pyprobe
            static_configs:
              - targets: ["{target.netloc}"]
    '''))
    prom = subprocess.Popen([PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        pid = child_calls(4321)
        query = f'sum(pyprobe_calls{{job="pyprobe",key="{pid}"}})'
        value, deadline = None, time.monotonic() + 60       # a wait for the first scrapes, not a timing
        while time.monotonic() < deadline:
            try:
                answer = json.loads(get(f"http://127.0.0.1:{port}/api/v1/query?"
                                        + urllib.parse.urlencode({"query": query})))
            except OSError:
                answer = None                                # not listening yet
            if answer and answer["data"]["result"]:
                value = answer["data"]["result"][0]["value"][1]
                break
            time.sleep(0.2)
        assert value == "4321"
        answer = json.loads(get(f"http://127.0.0.1:{port}/api/v1/query?"
                                + urllib.parse.urlencode({"query": 'sum(pyprobe_sizes_bucket{le="+Inf"}) '
                                                                   '- sum(pyprobe_sizes_count)'})))
        assert [r["value"][1] for r in answer["data"]["result"]] == ["0"]
    finally:
        prom.terminate()
        prom.wait(timeout=30)


def test_exposition_of_hash_histogram_and_several_programs(serve, tmp_path):
    (tmp_path / "getppids.py").write_text(SERVED)
    (tmp_path / "syncs.py").write_text(OTHER)
    (tmp_path / "exporter.toml").write_text(textwrap.dedent('''
        [[programs]]
        file = "getppids.py"
        counters = ["calls"]
        [[programs]]
        file = "syncs.py"
        prefix = "node"
    '''))
    url = serve("--config", "exporter.toml")
    pid = child_calls(77)
    child_calls(3, os.sync)
    text = get(url)
    assert f'pyprobe_calls_total{{key="{pid}"}} 77.0' in text.splitlines()
    assert "# TYPE pyprobe_calls_total counter" in text and "# TYPE pyprobe_sizes histogram" in text
    assert "# TYPE node_syncs gauge" in text
    syncs = [l for l in text.splitlines() if l.startswith('node_syncs{key="0"}')]
    assert len(syncs) == 1 and float(syncs[0].split()[1]) >= 3          # every process's syncs
    buckets = [l for l in text.splitlines() if l.startswith("pyprobe_sizes_bucket")]
    assert buckets[0].startswith('pyprobe_sizes_bucket{le="1.0"}') and buckets[-1].startswith(
        'pyprobe_sizes_bucket{le="+Inf"}')
    counts = [float(l.split()[1]) for l in buckets]
    assert counts == sorted(counts)                                     # cumulative
    count = [l for l in text.splitlines() if l.startswith("pyprobe_sizes_count")]
    assert float(count[0].split()[1]) == counts[-1] >= 77


def test_config_mistakes_are_one_line_and_exit_2(tmp_path):
    (tmp_path / "getppids.py").write_text(SERVED)
    (tmp_path / "clash.toml").write_text('[[programs]]\nfile = "getppids.py"\n[[programs]]\nfile = "getppids.py"\n')
    env = dict(os.environ, PYTHONPATH=REPO)
    for args, message in (
            (["getppids.py", "--counter", "nope"],
             "pyprobe: counters ['nope']: no such map in Getppids (maps: calls, sizes)\n"),
            (["--config", "clash.toml"],
             "pyprobe: metric pyprobe_calls comes from both Getppids and Getppids: give one of them another prefix\n")):
        r = subprocess.run([sys.executable, "-m", "pyprobe", "serve", "--port", "0", *args], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=60)
        assert (r.returncode, r.stderr) == (2, message)


class Key(Struct):
    pid: u32
    comm: char[16]


class Event(Struct):
    pid: u32


class Totals(Struct):
    calls: u64
    tenfold: u64


class Labeled(Program):
    target = Param(u32)
    by_task = Hash(Key, u64)
    lat = Histogram(linear=True, max_entries=8)
    events = RingBuf(Event, size=4096)
    per_cpu = PerCpuHash(u32, Totals)

    @syscall("getppid")
    def on(self, args):
        if tgid() != self.target:
            return
        k = Key()
        k.pid = tgid()
        k.comm = comm()
        self.by_task[k] += 1
        self.lat.increment(3)
        t = self.per_cpu.lookup_or_init(tgid(), Totals())
        if t is not None:
            t.calls += 1
            t.tenfold += 10
        e = Event()
        e.pid = tgid()
        self.events.submit(e)                   # nobody reads: a 4 KiB ring fills and loses


def test_serve_metrics_labels_linear_histogram_and_lost_records():
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        os.read(r, 1)
        for _ in range(1000):
            os.getppid()
        os._exit(0)
    with Labeled(target=child) as prog:
        os.write(w, b"g")
        os.waitpid(child, 0)
    with prog.serve_metrics(0, addr="127.0.0.1") as server:
        text = get(server.url).splitlines()
    lost = prog.events.lost
    prog.close()
    own_comm = open(f"/proc/{os.getpid()}/comm").read().strip()
    assert f'pyprobe_by_task{{comm="{own_comm}",pid="{child}"}} 1000.0' in text
    assert 'pyprobe_lat_bucket{le="2.0"} 0.0' in text and 'pyprobe_lat_bucket{le="3.0"} 1000.0' in text
    assert "pyprobe_lat_sum 3000.0" in text and "pyprobe_lat_count 1000.0" in text     # linear: exact
    assert f'pyprobe_per_cpu_calls{{key="{child}"}} 1000.0' in text          # summed over CPUs
    assert f'pyprobe_per_cpu_tenfold{{key="{child}"}} 10000.0' in text
    assert 0 < lost < 1000 and f'pyprobe_lost_records_total{{map="events"}} {float(lost)}' in text
