/* pyprobe's prelude: fixed-width types, libbpf's helpers, and the few macros
 * the translator emits. Map macros work on any libbpf BTF-defined map, since
 * `typeof(*(map).key)` and `typeof(*(map).value)` name its key and value types. */
typedef unsigned char __u8;
typedef signed char __s8;
typedef unsigned short __u16;
typedef short __s16;
typedef unsigned int __u32;
typedef int __s32;
typedef unsigned long long __u64;
typedef long long __s64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u64 __be64;
typedef __u32 __wsum;
typedef _Bool bool;

#include <bpf/bpf_helpers.h>

/* Kernel types come from the kernel's BTF, so bpf_tracing.h must use the
 * kernel's pt_regs field names (di, si, ...), as it does with a vmlinux.h. */
#define __VMLINUX_H__ 1
#include <bpf/bpf_core_read.h>

#define PP_ANY 0        /* BPF_ANY */
#define PP_NOEXIST 1    /* BPF_NOEXIST */
#define BPF_F_USER_STACK (1ULL << 8)
#define BPF_F_FAST_STACK_CMP (1ULL << 9)
#define BPF_F_REUSE_STACKID (1ULL << 10)

/* self.m[k] as a value: the stored value, or zero when the key is missing. */
#define pp_read(map_, key_) ({                                              \
	typeof(*(map_).key) __pp_k = (key_);                                     \
	typeof(*(map_).value) *__pp_v = bpf_map_lookup_elem(&(map_), &__pp_k);   \
	__pp_v ? *__pp_v : (typeof(*(map_).value)){0}; })

/* self.m.get(k): a pointer to the value, or NULL. */
#define pp_get(map_, key_) ({                                               \
	typeof(*(map_).key) __pp_k = (key_);                                     \
	(typeof(*(map_).value) *)bpf_map_lookup_elem(&(map_), &__pp_k); })

/* self.m[k] = v */
#define pp_set(map_, key_, val_) ({                                          \
	typeof(*(map_).key) __pp_k = (key_);                                     \
	typeof(*(map_).value) __pp_x = (val_);                                   \
	bpf_map_update_elem(&(map_), &__pp_k, &__pp_x, PP_ANY); })

/* del self.m[k] */
#define pp_delete(map_, key_) ({                                            \
	typeof(*(map_).key) __pp_k = (key_);                                     \
	bpf_map_delete_elem(&(map_), &__pp_k); })

/* self.m[k] += n on a hash: libbpf-tools' lookup-or-try-init, then an atomic add. */
#define pp_hash_add(map_, key_, n_) ({                                       \
	typeof(*(map_).key) __pp_k = (key_);                                     \
	typeof(*(map_).value) *__pp_v = bpf_map_lookup_elem(&(map_), &__pp_k);   \
	if (!__pp_v) {                                                         \
		typeof(*(map_).value) __pp_z = 0;                                   \
		bpf_map_update_elem(&(map_), &__pp_k, &__pp_z, PP_NOEXIST);         \
		__pp_v = bpf_map_lookup_elem(&(map_), &__pp_k);                     \
	}                                                                      \
	if (__pp_v) __sync_fetch_and_add(__pp_v, (n_)); })

/* self.m[i] += n on an array: every slot in range exists. */
#define pp_array_add(map_, key_, n_) ({                                      \
	typeof(*(map_).key) __pp_k = (key_);                                     \
	typeof(*(map_).value) *__pp_v = bpf_map_lookup_elem(&(map_), &__pp_k);   \
	if (__pp_v) __sync_fetch_and_add(__pp_v, (n_)); })

/* Per-CPU maps: this CPU's slot has no other writer. The add is done unsigned: a signed
 * overflow would be undefined in C, and clang turns `x += INT_MIN` into `x |= INT_MIN`. */
#define pp_percpu_hash_add(map_, key_, n_) ({                            \
	typeof(*(map_).key) __pp_k = (key_);                                     \
	typeof(*(map_).value) *__pp_v = bpf_map_lookup_elem(&(map_), &__pp_k);   \
	if (!__pp_v) {                                                         \
		typeof(*(map_).value) __pp_z = 0;                                   \
		bpf_map_update_elem(&(map_), &__pp_k, &__pp_z, PP_NOEXIST);         \
		__pp_v = bpf_map_lookup_elem(&(map_), &__pp_k);                     \
	}                                                                      \
	if (__pp_v) *__pp_v = (typeof(*__pp_v))((__u64)*__pp_v + (__u64)(n_)); })

#define pp_percpu_array_add(map_, key_, n_) ({                           \
	typeof(*(map_).key) __pp_k = (key_);                                     \
	typeof(*(map_).value) *__pp_v = bpf_map_lookup_elem(&(map_), &__pp_k);   \
	if (__pp_v) *__pp_v = (typeof(*__pp_v))((__u64)*__pp_v + (__u64)(n_)); })

/* bcc's lookup_or_try_init: the value, inserting `init` first when missing. */
#define pp_lookup_or_init(map_, key_, init_) ({                           \
	typeof(*(map_).key) __pp_k = (key_);                                     \
	typeof(*(map_).value) *__pp_v = bpf_map_lookup_elem(&(map_), &__pp_k);   \
	if (!__pp_v) {                                                         \
		typeof(*(map_).value) __pp_i = (init_);                             \
		bpf_map_update_elem(&(map_), &__pp_k, &__pp_i, PP_NOEXIST);         \
		__pp_v = bpf_map_lookup_elem(&(map_), &__pp_k);                     \
	}                                                                      \
	__pp_v; })

/* lookup_or_init of an array value (char[16]): C initializes no array from another, so the
 * initial value is given by its address. */
#define pp_lookup_or_init_at(map_, key_, initp_) ({                       \
	typeof(*(map_).key) __pp_k = (key_);                                     \
	typeof(*(map_).value) *__pp_v = bpf_map_lookup_elem(&(map_), &__pp_k);   \
	if (!__pp_v) {                                                         \
		bpf_map_update_elem(&(map_), &__pp_k, (initp_), PP_NOEXIST);        \
		__pp_v = bpf_map_lookup_elem(&(map_), &__pp_k);                     \
	}                                                                      \
	__pp_v; })

/* bcc's insert: only if the key is absent. */
#define pp_insert(map_, key_, val_) ({                                   \
	typeof(*(map_).key) __pp_k = (key_);                                     \
	typeof(*(map_).value) __pp_x = (val_);                                   \
	bpf_map_update_elem(&(map_), &__pp_k, &__pp_x, PP_NOEXIST); })

/* Loss is never silent: a record that cannot be delivered is counted. */
#define pp_count_lost(lost_) ({                                          \
	__u32 __pp_z = 0;                                                      \
	__u64 *__pp_l = bpf_map_lookup_elem(&(lost_), &__pp_z);                \
	if (__pp_l) *__pp_l += 1; })

#define pp_ringbuf_output(map_, ptr_, flags_, lost_) ({                   \
	long __pp_r = bpf_ringbuf_output(&(map_), (ptr_), sizeof(*(ptr_)), (flags_)); \
	if (__pp_r) pp_count_lost(lost_);                                      \
	__pp_r; })

#define pp_ringbuf_reserve(map_, type_, lost_) ({                         \
	type_ *__pp_p = bpf_ringbuf_reserve(&(map_), sizeof(type_), 0);        \
	if (!__pp_p) pp_count_lost(lost_);                                     \
	__pp_p; })

/* RingBuf(wakeup_bytes=N): wake the reader (BPF_RB_FORCE_WAKEUP, 2) only for the
 * record that makes N bytes wait, else not (BPF_RB_NO_WAKEUP, 1); 0: the kernel's
 * adaptive choice. Once per crossing, not for every record past it: a wake-up is an
 * irq_work on the producer's CPU, and a reader that is behind comes within its
 * poll_ms anyway. `size_` is the record's size; `reserved_` is 1 when the ring
 * already counts it (submit after reserve), 0 before an output. */
#define pp_ringbuf_flags(map_, bytes_, size_, reserved_) ({               \
	__u64 __pp_a = 0, __pp_n = ((size_) + 8 + 7) / 8 * 8; /* + header */    \
	if (bytes_) {                                                          \
		__pp_a = bpf_ringbuf_query(&(map_), 0); /* BPF_RB_AVAIL_DATA */     \
		if (!(reserved_)) __pp_a += __pp_n;                                 \
	}                                                                      \
	(bytes_) ? (__pp_a >= (bytes_) && __pp_a - __pp_n < (bytes_) ? 2 : 1) : 0; })

/* Every failed output is counted here, a full buffer (-ENOSPC) too: the kernel's
 * lost-record notice arrives only once the reader frees space, so counting it
 * instead would show a burst's losses late (the reader does not add it). */
#define pp_perf_output(ctx_, map_, ptr_, lost_) ({                        \
	long __pp_r = bpf_perf_event_output((ctx_), &(map_), 0xffffffffULL, (ptr_), sizeof(*(ptr_))); \
	if (__pp_r) pp_count_lost(lost_);                                      \
	__pp_r; })

/* PP_INLINE: a helper of this prelude that a program may not use (clang warns of unused
 * static functions in the main file). */
#define PP_INLINE static __always_inline __attribute__((unused))

/* Signed // and %: BPF (before cpu v4) divides only unsigned, so divide the
 * magnitudes and put the sign back: C's truncation toward zero. As BPF does,
 * dividing by zero gives 0 and the remainder is then the dividend. */
PP_INLINE __s64 pp_sdiv(__s64 a, __s64 b)
{
	__u64 ua = a < 0 ? -(__u64)a : (__u64)a;
	__u64 ub = b < 0 ? -(__u64)b : (__u64)b;
	__u64 q = ub ? ua / ub : 0;      /* C leaves / 0 undefined (clang exploits it) */
	return ((a < 0) != (b < 0)) ? -(__s64)q : (__s64)q;
}

PP_INLINE __s64 pp_smod(__s64 a, __s64 b)
{
	return b ? a - pp_sdiv(a, b) * b : a;
}

/* Unsigned // and % by a variable: BPF's x / 0 == 0 and x % 0 == x, spelled out since C
 * leaves them undefined. */
PP_INLINE __u64 pp_udiv(__u64 a, __u64 b)
{
	return b ? a / b : 0;
}

PP_INLINE __u64 pp_umod(__u64 a, __u64 b)
{
	return b ? a % b : a;
}

/* bcc's bpf_log2l(): 1 + floor(log2(v)), and, as in bcc, 1 for v == 0 too. */
PP_INLINE __u32 pp_log2(__u32 v)
{
	__u32 r, shift;
	r = (v > 0xFFFF) << 4; v >>= r;
	shift = (v > 0xFF) << 3; v >>= shift; r |= shift;
	shift = (v > 0xF) << 2; v >>= shift; r |= shift;
	shift = (v > 0x3) << 1; v >>= shift; r |= shift;
	r |= (v >> 1);
	return r;
}

PP_INLINE __u32 pp_log2l(__u64 v)
{
	__u32 hi = v >> 32;
	if (hi)
		return pp_log2(hi) + 32 + 1;
	return pp_log2((__u32)v) + 1;
}

/* `buf == "literal"`: compare n bytes (the literal and its NUL), unrolled. */
PP_INLINE int pp_memeq(const char *a, const char *b, int n)
{
	for (int i = 0; i < n; i++)
		if (a[i] != b[i])
			return 0;
	return 1;
}

/* pkt.arp: an ARP packet for IPv4 over Ethernet (the kernel's struct arphdr stops before
 * the addresses); packed, since the addresses sit at unaligned offsets. */
struct pp_arp_eth {
	__u16 ar_hrd;
	__u16 ar_pro;
	__u8 ar_hln;
	__u8 ar_pln;
	__u16 ar_op;
	__u8 ar_sha[6];
	__u32 ar_sip;
	__u8 ar_tha[6];
	__u32 ar_tip;
} __attribute__((packed));
