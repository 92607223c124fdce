"""BPF instructions as bytes: the encoding of include/uapi/linux/bpf.h, and a small
assembler with labels for the direct backend (dsl/direct.py).

An instruction is 8 bytes: opcode, dst and src registers (4 bits each), a signed 16-bit
offset and a signed 32-bit immediate; a 64-bit load (ld_imm64) takes two slots.
"""
from __future__ import annotations

import struct

# instruction classes
LD, LDX, ST, STX, ALU, JMP, JMP32, ALU64 = 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07
# sizes
SIZE = {4: 0x00, 2: 0x08, 1: 0x10, 8: 0x18}
IMM, MEM, ATOMIC = 0x00, 0x60, 0xC0
# ALU operations
ADD, SUB, MUL, DIV, OR, AND, LSH, RSH, NEG, MOD, XOR, MOV, ARSH = (
    0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xA0, 0xB0, 0xC0)
K, X = 0x00, 0x08          # operand: the immediate, or the source register
# jumps
JA, JEQ, JGT, JGE, JSET, JNE, JSGT, JSGE, CALL, EXIT, JLT, JLE, JSLT, JSLE = (
    0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xA0, 0xB0, 0xC0, 0xD0)

R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, FP = range(11)
CALLEE_SAVED = (R6, R7, R8, R9)

# helper numbers (enum bpf_func_id: a stable kernel ABI)
MAP_LOOKUP_ELEM, MAP_UPDATE_ELEM, MAP_DELETE_ELEM = 1, 2, 3
KTIME_GET_NS, TRACE_PRINTK, GET_SMP_PROCESSOR_ID, GET_CURRENT_PID_TGID, GET_CURRENT_UID_GID = 5, 6, 8, 14, 15
GET_CURRENT_COMM, PERF_EVENT_OUTPUT, GET_STACKID, RINGBUF_OUTPUT = 16, 25, 27, 130
PROBE_READ_USER, PROBE_READ_KERNEL, PROBE_READ_USER_STR, PROBE_READ_KERNEL_STR = 112, 113, 114, 115
BPF_F_CURRENT_CPU = 0xFFFFFFFF
BPF_ANY, BPF_NOEXIST = 0, 1


def encode(op: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", op, (src << 4) | dst, off, imm)


class Assembler:
    """Instructions appended in order; jumps name labels, resolved by finish().
    Map references are ld_imm64 slots that the object writer relocates (R_BPF_64_64)."""

    def __init__(self):
        self.insns: list[list] = []       # [op, dst, src, off or label, imm]
        self.labels: dict[str, int] = {}
        self.map_refs: list[tuple[int, str]] = []    # (slot, map name)
        self._n = 0

    def label(self) -> str:
        self._n += 1
        return f"L{self._n}"

    def place(self, label: str) -> None:
        self.labels[label] = len(self.insns)

    def _add(self, op, dst=0, src=0, off=0, imm=0) -> None:
        self.insns.append([op, dst, src, off, imm])

    # ---- ALU ---------------------------------------------------------------
    def alu(self, op: int, dst: int, src: int | None = None, imm: int = 0, wide: bool = True) -> None:
        cls = ALU64 if wide else ALU
        if src is None:
            self._add(cls | op | K, dst, 0, 0, imm)
        else:
            self._add(cls | op | X, dst, src, 0, 0)

    def mov(self, dst: int, src: int) -> None:
        if dst != src:
            self.alu(MOV, dst, src)

    def mov_imm(self, dst: int, value: int) -> None:
        """dst = value (any 64-bit value; ld_imm64 when it does not fit a sign-extended 32-bit immediate)."""
        value &= (1 << 64) - 1
        signed = value - (1 << 64) if value >> 63 else value
        if -(1 << 31) <= signed < (1 << 31):
            self.alu(MOV, dst, imm=signed)
        elif value < (1 << 32):
            self.alu(MOV, dst, imm=value - (1 << 32) if value >> 31 else value, wide=False)   # zero-extends
        else:
            lo, hi = value & 0xFFFFFFFF, value >> 32
            self._add(LD | SIZE[8] | IMM, dst, 0, 0, lo - (1 << 32) if lo >> 31 else lo)
            self._add(0, 0, 0, 0, hi - (1 << 32) if hi >> 31 else hi)

    def load_map(self, dst: int, name: str) -> None:
        self.map_refs.append((len(self.insns), name))
        self._add(LD | SIZE[8] | IMM, dst, 0, 0, 0)
        self._add(0, 0, 0, 0, 0)

    # ---- memory --------------------------------------------------------------
    def load(self, dst: int, base: int, off: int, size: int) -> None:
        self._add(LDX | MEM | SIZE[size], dst, base, off)

    def store(self, base: int, off: int, src: int, size: int) -> None:
        self._add(STX | MEM | SIZE[size], base, src, off)

    def store_imm(self, base: int, off: int, value: int, size: int) -> None:
        self._add(ST | MEM | SIZE[size], base, 0, off, value)

    def atomic_add(self, base: int, src: int, size: int) -> None:
        self._add(STX | ATOMIC | SIZE[size], base, src, 0, ADD)

    # ---- control -------------------------------------------------------------
    def jump(self, op: int, dst: int, label: str, src: int | None = None, imm: int = 0, cls: int = JMP) -> None:
        """A conditional jump; cls JMP32 compares the low 32 bits."""
        if src is None:
            self._add(cls | op | K, dst, 0, label, imm)
        else:
            self._add(cls | op | X, dst, src, label, 0)

    def goto(self, label: str) -> None:
        self._add(JMP | JA, 0, 0, label, 0)

    def call(self, helper: int) -> None:
        self._add(JMP | CALL, 0, 0, 0, helper)

    def exit(self) -> None:
        self._add(JMP | EXIT)

    def finish(self) -> bytes:
        out = []
        for i, (op, dst, src, off, imm) in enumerate(self.insns):
            if isinstance(off, str):
                off = self.labels[off] - i - 1
                if not -(1 << 15) <= off < (1 << 15):
                    raise OverflowError("a jump farther than 32767 instructions")
            out.append(encode(op, dst, src, off, imm))
        return b"".join(out)
