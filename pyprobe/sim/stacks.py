"""A simulated StackTrace map: `self.stacks.get_stackid(ctx, flags)` on the stack the test gave
(`sim.set(stack=[...], user_stack=[...])`, addresses innermost first), with the kernel's rules
(kernel/bpf/stackmap.c): skip the low 8 bits of flags' frames, keep at most 127, hash the frames
with jhash2 into roundup_pow_of_two(max_entries) buckets; a bucket holding another stack gives
-EEXIST unless BPF_F_REUSE_STACKID, BPF_F_FAST_STACK_CMP trusts an equal hash, an empty stack is
-EFAULT and a map out of free elements -ENOMEM. So ids are the kernel's for the same frames.
"""
from __future__ import annotations

import struct

from pyprobe.sim.storage import HashStorage

EFAULT, EEXIST, ENOMEM = 14, 17, 12
USER_STACK, FAST_STACK_CMP, REUSE_STACKID = 1 << 8, 1 << 9, 1 << 10
MAX_STACK = 127                 # sysctl kernel.perf_event_max_stack's default
M32 = 0xFFFFFFFF


def _rol(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & M32


def jhash2(words: list[int], initval: int = 0) -> int:
    """include/linux/jhash.h's jhash2() over 32-bit words."""
    a = b = c = (0xDEADBEEF + (len(words) << 2) + initval) & M32
    k = list(words)
    while len(k) > 3:
        a, b, c = (a + k[0]) & M32, (b + k[1]) & M32, (c + k[2]) & M32
        a = (a - c) & M32; a ^= _rol(c, 4); c = (c + b) & M32          # noqa: E702 - __jhash_mix, as written
        b = (b - a) & M32; b ^= _rol(a, 6); a = (a + c) & M32          # noqa: E702
        c = (c - b) & M32; c ^= _rol(b, 8); b = (b + a) & M32          # noqa: E702
        a = (a - c) & M32; a ^= _rol(c, 16); c = (c + b) & M32         # noqa: E702
        b = (b - a) & M32; b ^= _rol(a, 19); a = (a + c) & M32         # noqa: E702
        c = (c - b) & M32; c ^= _rol(b, 4); b = (b + a) & M32          # noqa: E702
        k = k[3:]
    if not k:
        return c
    if len(k) == 3:
        c = (c + k[2]) & M32
    if len(k) >= 2:
        b = (b + k[1]) & M32
    a = (a + k[0]) & M32
    c ^= b; c = (c - _rol(b, 14)) & M32                                 # noqa: E702 - __jhash_final
    a ^= c; a = (a - _rol(c, 11)) & M32                                 # noqa: E702
    b ^= a; b = (b - _rol(a, 25)) & M32                                 # noqa: E702
    c ^= b; c = (c - _rol(b, 16)) & M32                                 # noqa: E702
    a ^= c; a = (a - _rol(c, 4)) & M32                                  # noqa: E702
    b ^= a; b = (b - _rol(a, 14)) & M32                                 # noqa: E702
    c ^= b; c = (c - _rol(b, 24)) & M32                                 # noqa: E702
    return c


class StackTraceStorage(HashStorage):
    def __init__(self, spec, state):
        super().__init__(spec, state)
        self.depth = spec.value.size // 8
        self.n_buckets = 1 << max(0, (self.max - 1).bit_length())
        self.hashes: dict[int, int] = {}             # id -> the hash of the stack in its bucket

    def get_stackid(self, stack: list[int], flags: int) -> int:
        skip = flags & 0xFF
        frames = [int(a) & ((1 << 64) - 1) for a in stack[:min(self.depth + skip, MAX_STACK)]]
        if len(frames) <= skip:
            return -EFAULT
        frames = frames[skip:]
        data = struct.pack(f"<{len(frames)}Q", *frames)
        h = jhash2(list(struct.unpack(f"<{2 * len(frames)}I", data)))
        sid = h & (self.n_buckets - 1)
        key = struct.pack("<I", sid)
        held = self.d.get(key)
        matches = held is not None and self.hashes[sid] == h
        if matches and flags & FAST_STACK_CMP:
            return sid
        value = data.ljust(self.vsize, b"\0")
        if matches and held == value:
            return sid
        if held is not None and not flags & REUSE_STACKID:
            return -EEXIST
        if held is None and len(self.d) >= self.max:
            return -ENOMEM
        self.d[key] = bytearray(value)
        self.hashes[sid] = h
        return sid

    def delete(self, k) -> int:
        self.hashes.pop(struct.unpack("<I", k)[0], None)
        return super().delete(k)

    def clear(self) -> None:
        super().clear()
        self.hashes.clear()
