"""W6's server side: N series at /metrics, until stdin closes.

    exporter_agent.py pyprobe N   a loaded Program whose N-entry Hash is read on every scrape
                                  (prog.serve_metrics: batch lookup, labels, prometheus-client)
    exporter_agent.py plain N     the peer: prometheus-client alone, a Gauge with N labelled
                                  children set from Python (no map read): the library's own floor
Prints one JSON line {"port": ...} once it listens.
"""
import json
import os
import sys

from prometheus_client import CollectorRegistry, Gauge, start_http_server


def pyprobe_server(n: int):
    from pyprobe import Hash, Program, syscall, u32, u64

    class Series(Program):
        series = Hash(u32, u64, max_entries=n)

        @syscall("sync")
        def on_sync(self, args):
            self.series[0] += 1

    prog = Series().load()
    prog.series.update({i: i * 7 for i in range(n)})
    server = prog.serve_metrics(0, addr="127.0.0.1")
    return server.port, server


def plain_server(n: int):
    registry = CollectorRegistry()
    gauge = Gauge("plain_series", "N labelled gauges", ["key"], registry=registry)
    for i in range(n):
        gauge.labels(str(i)).set(i * 7)
    httpd, _ = start_http_server(0, addr="127.0.0.1", registry=registry)
    return httpd.server_port, httpd


def main():
    mode, n = sys.argv[1], int(sys.argv[2])
    port, keep = (pyprobe_server if mode == "pyprobe" else plain_server)(n)
    print(json.dumps({"port": port, "pid": os.getpid()}), flush=True)
    sys.stdin.read()
    del keep


if __name__ == "__main__":
    main()
