#!/usr/bin/env bash
# Install the system packages pyprobe needs, only when missing (idempotent).
set -euo pipefail

need=()
command -v clang >/dev/null 2>&1 || need+=(clang)
[ -f /usr/include/bpf/libbpf.h ] || need+=(libbpf-dev)
[ -f /usr/include/gelf.h ] || need+=(libelf-dev)      # bench/c/funccount_multi.c reads ELF symbols
[ -f /usr/include/linux/perf_event.h ] || need+=(linux-libc-dev)
command -v gcc >/dev/null 2>&1 || need+=(gcc)
# bcc's stack and debuginfo tests, ported: a C++ workload, stripped, its symbols split off.
command -v g++ >/dev/null 2>&1 || need+=(g++)
command -v objcopy >/dev/null 2>&1 || need+=(binutils)
# bcc's Python module: the tests compare print_log2_hist with bcc's own layout.
[ -f /usr/lib/python3/dist-packages/bcc/table.py ] || need+=(python3-bpfcc)
# <sys/sdt.h>: the USDT tests build a small C program with probes.
[ -f /usr/include/x86_64-linux-gnu/sys/sdt.h ] || need+=(systemtap-sdt-dev)
# Prometheus' server: the exporter test scrapes `pyprobe serve` with a real one.
command -v prometheus >/dev/null 2>&1 || [ -x /usr/bin/prometheus ] || need+=(prometheus)
# sslsniff's GnuTLS test: a client linked with GnuTLS (Debian's wget).
command -v wget >/dev/null 2>&1 || need+=(wget)
# sslsniff's NSS test: libcurl's NSS build (NSS's TLS, NSPR's PR_Send/PR_Recv), loaded by a script.
ls /usr/lib/*/libcurl-nss.so.4 >/dev/null 2>&1 || need+=(libcurl3-nss)
for extra in "$@"; do
    dpkg -s "$extra" >/dev/null 2>&1 || need+=("$extra")
done

if [ ${#need[@]} -gt 0 ]; then
    echo "setup: installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends "${need[@]}" >/dev/null 2>&1 || {
        apt-get update >/dev/null && apt-get install -y --no-install-recommends "${need[@]}" >/dev/null
    }
fi

# tracefs and bpffs: BPF tracing needs both; mount them when missing.
if [ "$(id -u)" = 0 ]; then
    grep -qs " /sys/kernel/tracing tracefs " /proc/mounts || mount -t tracefs nodev /sys/kernel/tracing
    grep -qs " /sys/fs/bpf bpf " /proc/mounts || mount -t bpf bpf /sys/fs/bpf
fi
