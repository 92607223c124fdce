"""CPU registers of a probe's context: `ctx.ip`, `ctx.sp`, `ctx.parm1`, `ctx.regs.ip`.

Kprobe, uprobe and USDT handlers get a `struct pt_regs *`; perf_event handlers get
`struct bpf_perf_event_data *` whose `regs` member holds the interrupted registers.
libbpf's PT_REGS_* macros give each its name on every architecture (bcc's PT_REGS_IP).
"""
from __future__ import annotations

from dataclasses import dataclass

from pyprobe.dsl.types import u64
from pyprobe.dsl.values import Value

REGISTERS = {"ip": "PT_REGS_IP", "sp": "PT_REGS_SP", "fp": "PT_REGS_FP", "rc": "PT_REGS_RC",
             **{f"parm{i}": f"PT_REGS_PARM{i}" for i in range(1, 7)}}


@dataclass
class Registers:
    """`ctx.regs` of a perf_event handler: its registers are read by name."""

    code: str          # a C expression of type struct pt_regs *

    def field(self, name: str) -> Value | None:
        return register(self.code, name)


def register(regs: str, name: str) -> Value | None:
    macro = REGISTERS.get(name)
    return None if macro is None else Value(f"((__u64){macro}({regs}))", u64)


def user_mode(regs: str) -> Value:
    """Whether the registers were interrupted in user space: user addresses are the lower
    half of the address space on x86-64 and arm64 (the kernel's live in the upper half)."""
    from pyprobe.dsl.types import s32

    return Value(f"((__s64)PT_REGS_IP({regs}) >= 0)", s32)


from pyprobe.dsl.builtins import helper  # noqa: E402  (registered here, next to what it reads)


@helper("user_mode")
def _user_mode(tr, node, ctx):
    from pyprobe.dsl.registers import user_mode

    regs = getattr(tr.context, "regs", None)
    if regs is None:
        tr.fail(node, "user_mode(ctx) needs the registers of a kprobe, uprobe, USDT or perf_event handler")
    return user_mode(regs(tr.context_param))
