"""sslsniff against a Python TLS client and server of its own over loopback (this system's
libssl, through Python's ssl module: SSL_read_ex/SSL_write_ex), with exact payloads."""
import os
import re

import pytest

from tool_workloads import Gated, Tool

HERE = os.path.dirname(os.path.abspath(__file__))
PEM = os.path.join(HERE, "data", "tls_localhost.pem")      # a self-signed key and certificate for localhost
REQUESTS = [b"GET /pyprobe-one HTTP/1.1\r\n\r\n", b"x"]
REPLIES = [bytes(range(256)) * 19 + b"tail", b"B" * 8292]   # 4868 bytes (pieces of every size), 8292 (over 8192)


def tls_exchange(out_file: str) -> None:
    """A server thread and a client (the main thread) over loopback: each request written by the
    client is read by the server, which answers with its reply; the threads' ids to out_file."""
    import socket
    import ssl
    import threading

    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(PEM)
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.check_hostname = False
    client_ctx.verify_mode = ssl.CERT_NONE
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    server_tid = []

    def serve():
        server_tid.append(threading.get_native_id())
        conn, _ = listener.accept()
        with server_ctx.wrap_socket(conn, server_side=True) as s:
            for request, reply in zip(REQUESTS, REPLIES):
                assert s.recv(65536) == request
                s.sendall(reply)

    t = threading.Thread(target=serve)
    t.start()
    with client_ctx.wrap_socket(socket.create_connection(listener.getsockname())) as c:
        for request, reply in zip(REQUESTS, REPLIES):
            c.sendall(request)
            assert c.recv(65536) == reply
    t.join()
    with open(out_file, "w") as f:
        f.write("%d %d" % (threading.get_native_id(), server_tid[0]))


def test_sslsniff_sees_each_read_and_write_with_its_bytes(tmp_path):
    from pyprobe.tools.sslsniff import HANDSHAKE, READ, WRITE, open_tool, payload

    child = Gated(tls_exchange, str(tmp_path / "tids"))
    with open_tool(pid=child.pid, handshake=True) as prog:
        assert child.go() == 0
        records = prog.events.drain()
    client, server = (int(x) for x in open(tmp_path / "tids").read().split())
    by_thread = {tid: [(int(r["rw"]), int(r["len"]), payload(r)) for r in records if r["tid"] == tid]
                 for tid in (client, server)}
    capped = [r[:8192] for r in REPLIES]             # a record holds 8192 bytes at most, as bcc's default
    assert by_thread[client] == [(HANDSHAKE, 0, b""), (WRITE, len(REQUESTS[0]), REQUESTS[0]),
                                 (READ, len(REPLIES[0]), capped[0]), (WRITE, 1, b"x"),
                                 (READ, len(REPLIES[1]), capped[1])]
    assert by_thread[server] == [(HANDSHAKE, 0, b""), (READ, len(REQUESTS[0]), REQUESTS[0]),
                                 (WRITE, len(REPLIES[0]), capped[0]), (READ, 1, b"x"),
                                 (WRITE, len(REPLIES[1]), capped[1])]
    assert set(records["pid"].tolist()) == {child.pid}
    assert all(r["delta_ns"] > 0 for r in records)


def test_sslsniff_command_prints_bcc_layout(tmp_path):
    child = Gated(tls_exchange, str(tmp_path / "tids"))
    tool = Tool("sslsniff", "-p", str(child.pid), "-x", "-l", "--max-buffer-size", "100")
    assert "libssl.so" in tool.probes and "(20 in all)" in tool.probes     # 10 functions, each entry and return
    assert child.go() == 0
    out = tool.stop()
    client, server = open(tmp_path / "tids").read().split()
    lines = out.splitlines()
    assert lines[0].split() == ["FUNC", "TIME(s)", "COMM", "PID", "LEN", "UID", "TID", "LAT(ms)"]
    heads = [l.split() for l in lines if l.startswith(("READ/RECV", "WRITE/SEND"))]
    assert sorted((h[0], h[3], h[4], h[6]) for h in heads) == sorted(
        [("WRITE/SEND", str(child.pid), str(len(REQUESTS[0])), client), ("READ/RECV", str(child.pid), str(len(REQUESTS[0])), server),
         ("WRITE/SEND", str(child.pid), str(len(REPLIES[0])), server), ("READ/RECV", str(child.pid), str(len(REPLIES[0])), client),
         ("WRITE/SEND", str(child.pid), "1", client), ("READ/RECV", str(child.pid), "1", server),
         ("WRITE/SEND", str(child.pid), str(len(REPLIES[1])), server), ("READ/RECV", str(child.pid), str(len(REPLIES[1])), client)]), \
        out + tool.stderr
    assert all(h[5] == "0" and re.fullmatch(r"\d+\.\d{3}", h[7]) for h in heads)
    # each record's data between bcc's marks: the request whole, the replies cut at 100 bytes
    blocks = re.findall(r"----- DATA -----\n(.*?)\n(----- END DATA.*?-----)\n\n\n", out, re.S)
    text = REQUESTS[0].decode().replace("\r\n", "\n")            # the pipe is read as text: universal newlines
    assert blocks.count((text, "----- END DATA -----")) == 2
    assert blocks.count(("x", "----- END DATA -----")) == 2
    assert blocks.count((REPLIES[1][:100].decode(), "----- END DATA (TRUNCATED, 8192 bytes lost) -----")) == 2
    assert len(blocks) == 8


def test_sslsniff_hexdump_and_comm(tmp_path):
    # --hexdump: bcc's 32 hex digits a line; -c: the command's name, matched whole
    child = Gated(tls_exchange, str(tmp_path / "tids"))
    name = open("/proc/self/comm").read().strip()          # the child's, inherited
    tool = Tool("sslsniff", "-p", str(child.pid), "--hexdump", "--max-buffer-size", "20", "-c", name)
    assert child.go() == 0
    out = tool.stop()
    dump = REQUESTS[0][:16].hex() + "\n" + REQUESTS[0][16:20].hex()
    assert out.count(f"----- DATA -----\n{dump}\n----- END DATA (TRUNCATED, 9 bytes lost) -----") == 2, out + tool.stderr
    assert out.count("\n" + "WRITE/SEND") == 4 and out.count("\n" + "READ/RECV") == 4


RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 17\r\nConnection: close\r\n\r\npyprobe-gnutls-ok"


def https_once(ready_file: str) -> None:
    """A TLS server (Python's ssl: OpenSSL) answering one request with RESPONSE; its port in ready_file."""
    import socket
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(PEM)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    with open(ready_file + ".tmp", "w") as f:
        f.write(str(listener.getsockname()[1]))
    os.rename(ready_file + ".tmp", ready_file)
    conn, _ = listener.accept()
    with ctx.wrap_socket(conn, server_side=True) as s:
        request = b""
        while b"\r\n\r\n" not in request:
            request += s.recv(65536)
        s.sendall(RESPONSE)


def test_sslsniff_sees_gnutls_calls_of_wget(tmp_path):
    """wget (GnuTLS) fetches from the OpenSSL server: what GnuTLS wrote is what OpenSSL read, and
    what GnuTLS read is the server's response, byte for byte."""
    import shutil
    import subprocess
    import time

    from pyprobe.tools.sslsniff import READ, WRITE, open_tool, payload

    wget = shutil.which("wget")
    if wget is None or "libgnutls" not in subprocess.run(["ldd", wget], capture_output=True, text=True).stdout:
        pytest.skip("missing capability: a wget linked with GnuTLS (tools/setup-system.sh installs Debian's)")
    ready = str(tmp_path / "port")
    server = Gated(https_once, ready)
    with open_tool() as prog:
        server.release()
        while not os.path.exists(ready):
            time.sleep(0.01)
        port = open(ready).read()
        client = subprocess.run([wget, "-q", "-O", "-", "--no-check-certificate", "--tries=1",
                                 f"https://127.0.0.1:{port}/pyprobe-gnutls"], capture_output=True, timeout=30)
        os.waitpid(server.pid, 0)
        records = prog.events.drain()
    assert client.stdout == b"pyprobe-gnutls-ok", client.stderr
    mine = [r for r in records if r["comm"] == b"wget"]
    written = b"".join(payload(r) for r in mine if r["rw"] == WRITE)
    read = b"".join(payload(r) for r in mine if r["rw"] == READ)
    served = [r for r in records if r["pid"] == server.pid]
    assert written.startswith(b"GET /pyprobe-gnutls HTTP/1.1\r\n") and written.endswith(b"\r\n\r\n")
    assert written == b"".join(payload(r) for r in served if r["rw"] == READ)
    assert read == RESPONSE == b"".join(payload(r) for r in served if r["rw"] == WRITE)


NSS_FETCH = os.path.join(HERE, "data", "nss_fetch.py")


def fetch_from(ready: str, argv: list, **popen):
    """Wait for https_once's port, then run argv + [its URL] (a client); (pid, stdout, stderr, status)."""
    import subprocess
    import time

    while not os.path.exists(ready):
        time.sleep(0.01)
    url = f"https://127.0.0.1:{open(ready).read()}/pyprobe-tls"
    client = subprocess.Popen(argv + [url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen)
    out, err = client.communicate(timeout=30)
    return client.pid, out, err, client.returncode


def request_of(port: str) -> bytes:
    return f"GET /pyprobe-tls HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: */*\r\n\r\n".encode()


def test_sslsniff_sees_nss_calls_of_libcurl_nss(tmp_path):
    """libcurl's NSS build (its TLS is NSS, its reads and writes NSPR's PR_Recv and PR_Send) fetches
    from the OpenSSL server: NSS's write is the request OpenSSL read, NSS's read the response."""
    import sys

    from pyprobe.tools.sslsniff import READ, WRITE, library_path, open_tool, payload

    if not os.path.exists("/usr/lib/x86_64-linux-gnu/libcurl-nss.so.4") or library_path("nss") is None:
        pytest.skip("missing capability: libcurl's NSS build and NSPR (Debian's libcurl3-nss, which "
                    "tools/setup-system.sh installs)")
    ready = str(tmp_path / "port")
    server = Gated(https_once, ready)
    with open_tool([("nss", library_path("nss")), ("openssl", library_path("openssl"))]) as prog:
        server.release()
        pid, out, err, status = fetch_from(ready, [sys.executable, NSS_FETCH])
        os.waitpid(server.pid, 0)
        records = prog.events.drain()
    assert status == 0 and out == b"pyprobe-gnutls-ok", err
    request = request_of(open(ready).read())
    assert [(int(r["rw"]), int(r["len"]), payload(r)) for r in records if r["pid"] == pid] == \
        [(WRITE, len(request), request), (READ, len(RESPONSE), RESPONSE)]
    assert [(int(r["rw"]), int(r["len"]), payload(r)) for r in records if r["pid"] == server.pid] == \
        [(READ, len(request), request), (WRITE, len(RESPONSE), RESPONSE)]


PY_FETCH = """
import socket, ssl, sys
host, port = sys.argv[1].split("/")[2].split(":")
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
with ctx.wrap_socket(socket.create_connection((host, int(port)))) as s:
    s.sendall(("GET /pyprobe-tls HTTP/1.1\\r\\nHost: %s:%s\\r\\nAccept: */*\\r\\n\\r\\n" % (host, port)).encode())
    got = b""
    while not got.endswith(b"-ok"):
        got += s.recv(65536)
sys.stdout.write(got.decode())
"""


def test_sslsniff_uid_filter(tmp_path):
    """-u UID: a client running as uid 65534 against the server (root): only the client's write
    and read are printed, with UID 65534 (-x)."""
    python = "/usr/bin/python3"          # the system's: the test's venv may be one only root can read
    if not os.access(python, os.X_OK):
        pytest.skip("missing capability: /usr/bin/python3, for a TLS client running as uid 65534")
    ready = str(tmp_path / "port")
    server = Gated(https_once, ready)
    tool = Tool("sslsniff", "-u", "65534", "-x")
    server.release()
    pid, out, err, status = fetch_from(ready, [python, "-c", PY_FETCH], user=65534, group=65534)
    os.waitpid(server.pid, 0)
    printed = tool.stop()
    assert status == 0 and out.endswith(b"pyprobe-gnutls-ok"), err
    request = request_of(open(ready).read())
    heads = [l.split() for l in printed.splitlines() if l.startswith(("READ/RECV", "WRITE/SEND"))]
    assert [(h[0], h[4], h[5], h[6]) for h in heads if h[3] == str(pid)] == \
        [("WRITE/SEND", str(len(request)), "65534", str(pid)), ("READ/RECV", str(len(RESPONSE)), "65534", str(pid))]
    assert all(h[5] == "65534" for h in heads) and not any(h[3] == str(server.pid) for h in heads), printed
