"""cffi build script for pyprobe.backend._libbpf (API mode, built at install time).

The cdef speaks libbpf's own names. A few small C helpers live here because
they need what Python cannot express well: va_list callbacks (libbpf's print
and btf_dump's printf), perf_event_attr setup, and per-record copies from ring
and perf buffers into one flat array, so no Python runs per event.
"""
from cffi import FFI

CDEF = r"""
typedef int... pid_t;

struct bpf_object;
struct bpf_program;
struct bpf_map;
struct bpf_link;
struct btf;
struct btf_type { uint32_t name_off; uint32_t info; union { uint32_t size; uint32_t type; }; ...; };
struct btf_member { uint32_t name_off; uint32_t type; uint32_t offset; };
struct btf_param { uint32_t name_off; uint32_t type; };
struct btf_array { uint32_t type; uint32_t index_type; uint32_t nelems; };

struct bpf_object_open_opts { size_t sz; const char *object_name; ...; };
struct bpf_uprobe_opts { size_t sz; size_t ref_ctr_offset; uint64_t bpf_cookie;
                         bool retprobe; const char *func_name; ...; };
struct bpf_kprobe_opts { size_t sz; uint64_t bpf_cookie; size_t offset; bool retprobe; ...; };
struct bpf_ksyscall_opts { size_t sz; uint64_t bpf_cookie; bool retprobe; ...; };
struct bpf_usdt_opts { size_t sz; uint64_t usdt_cookie; ...; };
struct bpf_tracepoint_opts { size_t sz; uint64_t bpf_cookie; ...; };
struct bpf_map_batch_opts { size_t sz; uint64_t elem_flags; uint64_t flags; ...; };
struct bpf_map_create_opts { size_t sz; uint32_t map_flags; uint32_t inner_map_fd; ...; };
struct bpf_map_info { uint32_t type; uint32_t id; uint32_t key_size; uint32_t value_size;
                      uint32_t max_entries; uint32_t map_flags; char name[16]; ...; };
struct bpf_insn { uint8_t code; int32_t imm; ...; };
struct bpf_prog_load_opts { size_t sz; uint32_t expected_attach_type; uint32_t attach_btf_id;
                            char *log_buf; uint32_t log_size; uint32_t log_level; ...; };

struct bpf_object *bpf_object__open_mem(const void *obj_buf, size_t obj_buf_sz,
                                        const struct bpf_object_open_opts *opts);
int bpf_object__load(struct bpf_object *obj);
void bpf_object__close(struct bpf_object *obj);
struct bpf_program *bpf_object__find_program_by_name(const struct bpf_object *obj, const char *name);
struct bpf_program *bpf_object__next_program(const struct bpf_object *obj, struct bpf_program *prog);
struct bpf_map *bpf_object__find_map_by_name(const struct bpf_object *obj, const char *name);
struct bpf_map *bpf_object__next_map(const struct bpf_object *obj, const struct bpf_map *map);

const char *bpf_program__name(const struct bpf_program *prog);
const char *bpf_program__section_name(const struct bpf_program *prog);
int bpf_program__fd(const struct bpf_program *prog);
int bpf_program__set_log_buf(struct bpf_program *prog, char *log_buf, size_t log_size);
int bpf_program__set_log_level(struct bpf_program *prog, uint32_t log_level);
int bpf_program__set_autoload(struct bpf_program *prog, bool autoload);

struct bpf_link *bpf_program__attach_tracepoint(const struct bpf_program *prog,
                                                const char *tp_category, const char *tp_name);
struct bpf_link *bpf_program__attach_tracepoint_opts(const struct bpf_program *prog,
                                                     const char *tp_category, const char *tp_name,
                                                     const struct bpf_tracepoint_opts *opts);
struct bpf_link *bpf_program__attach_raw_tracepoint(const struct bpf_program *prog, const char *tp_name);
struct bpf_link *bpf_program__attach_kprobe_opts(const struct bpf_program *prog, const char *func_name,
                                                 const struct bpf_kprobe_opts *opts);
struct bpf_link *bpf_program__attach_ksyscall(const struct bpf_program *prog, const char *syscall_name,
                                              const struct bpf_ksyscall_opts *opts);
struct bpf_link *bpf_program__attach_uprobe_opts(const struct bpf_program *prog, pid_t pid,
                                                 const char *binary_path, size_t func_offset,
                                                 const struct bpf_uprobe_opts *opts);
struct bpf_link *bpf_program__attach_usdt(const struct bpf_program *prog, pid_t pid,
                                          const char *binary_path, const char *usdt_provider,
                                          const char *usdt_name, const struct bpf_usdt_opts *opts);
struct bpf_link *bpf_program__attach_perf_event(const struct bpf_program *prog, int pfd);
struct bpf_link *bpf_program__attach_trace(const struct bpf_program *prog);
struct bpf_link *bpf_program__attach_xdp(const struct bpf_program *prog, int ifindex);
struct bpf_link *bpf_program__attach(const struct bpf_program *prog);
struct bpf_link *bpf_program__attach_cgroup(const struct bpf_program *prog, int cgroup_fd);
int bpf_link__destroy(struct bpf_link *link);
int bpf_link__fd(const struct bpf_link *link);

struct bpf_tc_hook { size_t sz; int ifindex; int attach_point; uint32_t parent; ...; };
struct bpf_tc_opts { size_t sz; int prog_fd; uint32_t flags; uint32_t prog_id; uint32_t handle; uint32_t priority; ...; };
int bpf_tc_hook_create(struct bpf_tc_hook *hook);
int bpf_tc_hook_destroy(struct bpf_tc_hook *hook);
int bpf_tc_attach(const struct bpf_tc_hook *hook, struct bpf_tc_opts *opts);
int bpf_tc_detach(const struct bpf_tc_hook *hook, const struct bpf_tc_opts *opts);

int bpf_map__fd(const struct bpf_map *map);
const char *bpf_map__name(const struct bpf_map *map);
int bpf_map__type(const struct bpf_map *map);
uint32_t bpf_map__max_entries(const struct bpf_map *map);
uint32_t bpf_map__key_size(const struct bpf_map *map);
uint32_t bpf_map__value_size(const struct bpf_map *map);
int bpf_map__set_max_entries(struct bpf_map *map, uint32_t max_entries);
int bpf_map__set_initial_value(struct bpf_map *map, const void *data, size_t size);
const void *bpf_map__initial_value(struct bpf_map *map, size_t *psize);

int bpf_map_update_elem(int fd, const void *key, const void *value, uint64_t flags);
int bpf_map_lookup_elem(int fd, const void *key, void *value);
int bpf_map_delete_elem(int fd, const void *key);
int bpf_map_get_next_key(int fd, const void *key, void *next_key);
int bpf_map_lookup_batch(int fd, void *in_batch, void *out_batch, void *keys, void *values,
                         uint32_t *count, const struct bpf_map_batch_opts *opts);
int bpf_map_delete_batch(int fd, const void *keys, uint32_t *count, const struct bpf_map_batch_opts *opts);
int bpf_map_update_batch(int fd, const void *keys, const void *values, uint32_t *count,
                         const struct bpf_map_batch_opts *opts);
int bpf_map_lookup_and_delete_batch(int fd, void *in_batch, void *out_batch, void *keys, void *values,
                                    uint32_t *count, const struct bpf_map_batch_opts *opts);
int bpf_map_lookup_and_delete_elem(int fd, const void *key, void *value);
int bpf_map_create(int map_type, const char *map_name, uint32_t key_size, uint32_t value_size,
                   uint32_t max_entries, const struct bpf_map_create_opts *opts);
int bpf_obj_pin(int fd, const char *pathname);
int bpf_obj_get(const char *pathname);
int bpf_obj_get_info_by_fd(int bpf_fd, void *info, uint32_t *info_len);
int bpf_map__set_pin_path(struct bpf_map *map, const char *path);
int bpf_map__set_inner_map_fd(struct bpf_map *map, int fd);
int bpf_map__reuse_fd(struct bpf_map *map, int fd);

int bpf_prog_get_next_id(uint32_t start_id, uint32_t *next_id);
int bpf_link_get_next_id(uint32_t start_id, uint32_t *next_id);
int bpf_map_get_next_id(uint32_t start_id, uint32_t *next_id);
int bpf_prog_get_fd_by_id(uint32_t id);
int bpf_link_get_fd_by_id(uint32_t id);
int bpf_map_get_fd_by_id(uint32_t id);

int bpf_prog_load(int prog_type, const char *prog_name, const char *license,
                  const struct bpf_insn *insns, size_t insn_cnt, struct bpf_prog_load_opts *opts);
int bpf_raw_tracepoint_open(const char *name, int prog_fd);
int pp_trivial_prog(int prog_type, uint32_t expected_attach_type, uint32_t attach_btf_id, char *log, uint32_t log_size);
int bpf_program__set_expected_attach_type(struct bpf_program *prog, int type);
int pp_uprobe_multi_link(int prog_fd, const char *path, const unsigned long *offsets, uint32_t cnt,
                         uint32_t flags, int pid);
int pp_uprobe_multi_link_cookies(int prog_fd, const char *path, const unsigned long *offsets,
                                 const uint64_t *cookies, uint32_t cnt, uint32_t flags, int pid);
int pp_tcx_link(int prog_fd, int ifindex, int egress);
struct bpf_link *pp_iter_attach(const struct bpf_program *prog, int map_fd);
int bpf_iter_create(int link_fd);
int bpf_prog_attach(int prog_fd, int attachable_fd, int type, unsigned int flags);
int bpf_prog_detach2(int prog_fd, int attachable_fd, int type);
int libbpf_probe_bpf_prog_type(int prog_type, const void *opts);
int libbpf_probe_bpf_map_type(int map_type, const void *opts);
int libbpf_num_possible_cpus(void);
long libbpf_get_error(const void *ptr);

struct btf *btf__load_vmlinux_btf(void);
struct btf *btf__parse(const char *path, void **btf_ext);
void btf__free(struct btf *btf);
int32_t btf__find_by_name_kind(const struct btf *btf, const char *type_name, uint32_t kind);
uint32_t btf__type_cnt(const struct btf *btf);
const struct btf_type *btf__type_by_id(const struct btf *btf, uint32_t id);
const char *btf__name_by_offset(const struct btf *btf, uint32_t offset);

struct ring_buffer;
struct perf_buffer;
int ring_buffer__poll(struct ring_buffer *rb, int timeout_ms);
int ring_buffer__consume(struct ring_buffer *rb);
int ring_buffer__epoll_fd(const struct ring_buffer *rb);
void ring_buffer__free(struct ring_buffer *rb);
int perf_buffer__poll(struct perf_buffer *pb, int timeout_ms);
int perf_buffer__consume(struct perf_buffer *pb);
int perf_buffer__epoll_fd(const struct perf_buffer *pb);
void perf_buffer__free(struct perf_buffer *pb);

/* pyprobe's helpers, defined below in C */
struct pp_sink { char *buf; size_t len; size_t cap; size_t rec; uint64_t count; uint64_t lost; uint64_t short_records;
                 uint64_t lost_notices; };
struct ring_buffer *pp_ring_new(int map_fd, struct pp_sink *sink);
struct perf_buffer *pp_perf_new(int map_fd, size_t page_cnt, uint32_t wakeup_events, struct pp_sink *sink);
void pp_sink_free(struct pp_sink *sink);
void pp_trim_strings(char *buf, size_t n, size_t rec, const uint32_t *fields, size_t nfields);
extern "Python" void pp_on_libbpf_print(int level, const char *msg);
void pp_install_print(int enabled);
char *pp_btf_dump_types(const struct btf *btf, const uint32_t *ids, int n, int *err);
void pp_free(void *p);
int pp_perf_event_open_raw(const void *attr, int pid, int cpu, int group_fd);
int pp_perf_event_open(uint32_t type, uint64_t config, uint64_t period_or_freq, int use_freq,
                       int pid, int cpu);
int pp_prog_info(int fd, uint32_t *id, uint32_t *type, char *name, uint32_t *xlated_len,
                 uint64_t *run_time_ns, uint64_t *run_cnt);
int pp_link_info(int fd, uint32_t *id, uint32_t *prog_id, uint32_t *type);
"""

SOURCE = r"""
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <linux/perf_event.h>
#include <bpf/libbpf.h>
#include <bpf/bpf.h>
#include <bpf/btf.h>

static void pp_on_libbpf_print(int level, const char *msg);

static int pp_print_cb(enum libbpf_print_level level, const char *fmt, va_list ap)
{
    char buf[4096];
    vsnprintf(buf, sizeof(buf), fmt, ap);
    pp_on_libbpf_print((int)level, buf);
    return 0;
}

static void pp_install_print(int enabled)
{
    libbpf_set_print(enabled ? pp_print_cb : NULL);
}

static void pp_dump_printf(void *ctx, const char *fmt, va_list ap)
{
    vfprintf((FILE *)ctx, fmt, ap);
}

/* Dump the C declarations of the given BTF types and everything they depend
 * on, each once, in an order C accepts. Returns a malloc'ed string. */
static char *pp_btf_dump_types(const struct btf *btf, const uint32_t *ids, int n, int *err)
{
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    struct btf_dump *d;
    int i;

    *err = 0;
    if (!f) { *err = errno; return NULL; }
    d = btf_dump__new(btf, pp_dump_printf, f, NULL);
    if (!d) { *err = errno; fclose(f); free(out); return NULL; }
    for (i = 0; i < n; i++) {
        int r = btf_dump__dump_type(d, ids[i]);
        if (r) { *err = -r; break; }
    }
    btf_dump__free(d);
    fclose(f);
    return out;
}

static void pp_free(void *p) { free(p); }

/* Event records land in one growing array (a numpy batch to be), copied in C:
 * no Python runs per event. */
struct pp_sink { char *buf; size_t len; size_t cap; size_t rec; uint64_t count; uint64_t lost; uint64_t short_records;
                 uint64_t lost_notices; };

static int pp_sink_put(struct pp_sink *s, const void *data, size_t size)
{
    if (s->len + s->rec > s->cap) {
        size_t cap = s->cap ? s->cap * 2 : s->rec * 4096;
        char *buf = realloc(s->buf, cap);
        if (!buf)
            return -ENOMEM;
        s->buf = buf;
        s->cap = cap;
    }
    if (size >= s->rec) {
        memcpy(s->buf + s->len, data, s->rec);
    } else {
        memcpy(s->buf + s->len, data, size);
        memset(s->buf + s->len + size, 0, s->rec - size);
        s->short_records++;
    }
    s->len += s->rec;
    s->count++;
    return 0;
}

static void pp_sink_free(struct pp_sink *s) { free(s->buf); s->buf = NULL; s->len = s->cap = 0; }

/* char[N] fields end at their first NUL, as C and bcc read them: in each of n records of
 * rec bytes, zero what follows it. fields: (offset, length) pairs, inside the record. */
static void pp_trim_strings(char *buf, size_t n, size_t rec, const uint32_t *fields, size_t nfields)
{
    for (size_t i = 0; i < n; i++, buf += rec)
        for (size_t f = 0; f < nfields; f++) {
            char *s = buf + fields[2 * f];
            char *nul = memchr(s, 0, fields[2 * f + 1]);
            if (nul)
                memset(nul, 0, fields[2 * f + 1] - (size_t)(nul - s));
        }
}

static int pp_ring_cb(void *ctx, void *data, size_t size)
{
    struct pp_sink *s = ctx;
    if (pp_sink_put(s, data, size))
        s->lost++;                /* out of memory: counted, never silent */
    return 0;
}

static struct ring_buffer *pp_ring_new(int map_fd, struct pp_sink *sink)
{
    return ring_buffer__new(map_fd, pp_ring_cb, sink, NULL);
}

struct pp_perf_sample { struct perf_event_header header; uint32_t size; char data[]; };
struct pp_perf_lost { struct perf_event_header header; uint64_t id; uint64_t lost; };

static enum bpf_perf_event_ret pp_perf_cb(void *ctx, int cpu, struct perf_event_header *ev)
{
    struct pp_sink *s = ctx;
    if (ev->type == PERF_RECORD_SAMPLE) {
        struct pp_perf_sample *r = (void *)ev;
        if (pp_sink_put(s, r->data, r->size))
            s->lost++;
    } else if (ev->type == PERF_RECORD_LOST) {
        /* The handler already counted each failed output, in the kernel and at once;
         * this notice comes late (only once space frees) and would count them twice. */
        s->lost_notices += ((struct pp_perf_lost *)ev)->lost;
    }
    return LIBBPF_PERF_EVENT_CONT;
}

/* A perf buffer that wakes the reader every `wakeup_events` records (not each). */
static struct perf_buffer *pp_perf_new(int map_fd, size_t page_cnt, uint32_t wakeup_events, struct pp_sink *sink)
{
    struct perf_event_attr attr;

    memset(&attr, 0, sizeof(attr));
    attr.size = sizeof(attr);
    attr.type = PERF_TYPE_SOFTWARE;
    attr.config = PERF_COUNT_SW_BPF_OUTPUT;
    attr.sample_type = PERF_SAMPLE_RAW;
    attr.sample_period = 1;
    attr.wakeup_events = wakeup_events ? wakeup_events : 1;
    return perf_buffer__new_raw(map_fd, page_cnt, &attr, pp_perf_cb, sink, NULL);
}

/* One link attaching a program to several functions of a binary (BPF_TRACE_UPROBE_MULTI,
 * Linux >= 6.6; libbpf 1.1 has no wrapper). union bpf_attr's link_create is laid out by
 * hand, as the system's linux/bpf.h may predate it. Returns a link fd or -errno. */
static int pp_uprobe_multi_link_cookies(int prog_fd, const char *path, const unsigned long *offsets,
                                        const uint64_t *cookies, uint32_t cnt, uint32_t flags, int pid)
{
    struct {
        uint32_t prog_fd, target_fd, attach_type, flags;
        uint64_t path, offsets, ref_ctr_offsets, cookies;
        uint32_t cnt, multi_flags, pid, pad;
    } attr;
    int fd;

    memset(&attr, 0, sizeof(attr));
    attr.prog_fd = prog_fd;
    attr.attach_type = 48;                      /* BPF_TRACE_UPROBE_MULTI */
    attr.path = (uint64_t)(unsigned long)path;
    attr.offsets = (uint64_t)(unsigned long)offsets;
    attr.cookies = (uint64_t)(unsigned long)cookies;   /* one a function, bpf_get_attach_cookie()'s; or NULL */
    attr.cnt = cnt;
    attr.multi_flags = flags;                   /* BPF_F_UPROBE_MULTI_RETURN = 1 */
    attr.pid = pid > 0 ? (uint32_t)pid : 0;
    fd = syscall(__NR_bpf, 28 /* BPF_LINK_CREATE */, &attr, sizeof(attr));
    return fd < 0 ? -errno : fd;
}

static int pp_uprobe_multi_link(int prog_fd, const char *path, const unsigned long *offsets, uint32_t cnt,
                                uint32_t flags, int pid)
{
    return pp_uprobe_multi_link_cookies(prog_fd, path, offsets, NULL, cnt, flags, pid);
}

/* A tc program as a tcx link on an interface (BPF_TCX_INGRESS/EGRESS, Linux >= 6.6; libbpf 1.1
 * has no wrapper): the link goes with its fd, so even a SIGKILLed process leaves no filter.
 * Returns a link fd or -errno (EINVAL on kernels without tcx). */
static int pp_tcx_link(int prog_fd, int ifindex, int egress)
{
    struct {
        uint32_t prog_fd, target_ifindex, attach_type, flags;
        uint32_t relative_fd; uint64_t expected_revision;
    } __attribute__((aligned(8))) attr;
    int fd;

    memset(&attr, 0, sizeof(attr));
    attr.prog_fd = prog_fd;
    attr.target_ifindex = ifindex;
    attr.attach_type = egress ? 47 : 46;        /* BPF_TCX_EGRESS : BPF_TCX_INGRESS */
    fd = syscall(__NR_bpf, 28 /* BPF_LINK_CREATE */, &attr, sizeof(attr));
    return fd < 0 ? -errno : fd;
}

/* A BPF iterator's link; map_fd >= 0 gives a map iterator the map whose elements it walks
 * (union bpf_iter_link_info). NULL with errno set on failure, as libbpf's attach calls. */
static struct bpf_link *pp_iter_attach(const struct bpf_program *prog, int map_fd)
{
    union bpf_iter_link_info info;
    LIBBPF_OPTS(bpf_iter_attach_opts, opts);

    if (map_fd < 0)
        return bpf_program__attach_iter(prog, NULL);
    memset(&info, 0, sizeof(info));
    info.map.map_fd = map_fd;
    opts.link_info = &info;
    opts.link_info_len = sizeof(info);
    return bpf_program__attach_iter(prog, &opts);
}

/* Load `r0 = 0; exit`: enough to ask the kernel whether a program type and
 * attach point are allowed (feature probes). Returns an fd or -errno. */
static int pp_trivial_prog(int prog_type, uint32_t expected_attach_type, uint32_t attach_btf_id,
                           char *log, uint32_t log_size)
{
    struct bpf_insn insns[2];
    LIBBPF_OPTS(bpf_prog_load_opts, opts);

    memset(insns, 0, sizeof(insns));
    insns[0].code = 0xb7;   /* BPF_ALU64 | BPF_MOV | BPF_K: r0 = 0 */
    insns[1].code = 0x95;   /* BPF_JMP | BPF_EXIT */
    opts.expected_attach_type = expected_attach_type;
    opts.attach_btf_id = attach_btf_id;
    opts.log_buf = log;
    opts.log_size = log_size;
    opts.log_level = log ? 1 : 0;
    return bpf_prog_load(prog_type, "pp_probe", "GPL", insns, 2, &opts);
}

static int pp_perf_event_open(uint32_t type, uint64_t config, uint64_t period_or_freq, int use_freq,
                              int pid, int cpu)
{
    struct perf_event_attr attr;
    int fd;

    memset(&attr, 0, sizeof(attr));
    attr.size = sizeof(attr);
    attr.type = type;
    attr.config = config;
    attr.freq = use_freq ? 1 : 0;
    attr.sample_period = period_or_freq;   /* sample_freq shares the union */
    fd = syscall(__NR_perf_event_open, &attr, pid, cpu, -1, PERF_FLAG_FD_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

/* perf_event_open(2) with an attribute Python packed (bcc's attach_perf_event_raw). */
static int pp_perf_event_open_raw(const void *attr, int pid, int cpu, int group_fd)
{
    int fd = syscall(__NR_perf_event_open, attr, pid, cpu, group_fd, PERF_FLAG_FD_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

static int pp_prog_info(int fd, uint32_t *id, uint32_t *type, char *name, uint32_t *xlated_len,
                        uint64_t *run_time_ns, uint64_t *run_cnt)
{
    struct bpf_prog_info info;
    uint32_t len = sizeof(info);
    int r;

    memset(&info, 0, sizeof(info));
    r = bpf_obj_get_info_by_fd(fd, &info, &len);
    if (r) return r;
    *id = info.id;
    *type = info.type;
    memcpy(name, info.name, sizeof(info.name));
    *xlated_len = info.xlated_prog_len;
    *run_time_ns = info.run_time_ns;
    *run_cnt = info.run_cnt;
    return 0;
}

static int pp_link_info(int fd, uint32_t *id, uint32_t *prog_id, uint32_t *type)
{
    struct bpf_link_info info;
    uint32_t len = sizeof(info);
    int r;

    memset(&info, 0, sizeof(info));
    r = bpf_obj_get_info_by_fd(fd, &info, &len);
    if (r) return r;
    *id = info.id;
    *prog_id = info.prog_id;
    *type = info.type;
    return 0;
}
"""

ffibuilder = FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source("pyprobe.backend._libbpf", SOURCE, libraries=["bpf"])

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
