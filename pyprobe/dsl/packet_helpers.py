"""Helpers that send a packet elsewhere from a packet program (bcc's bpf_clone_redirect
and bpf_redirect): `clone_redirect(ctx, ifindex, flags)` and `redirect(ifindex, flags)`.

Both are the kernel's helpers of the same name. A helper that may change the packet
(clone_redirect) leaves the handler's header pointers invalid: read the headers
before it; the verifier refuses a read after it.
"""
from __future__ import annotations

from pyprobe.dsl.builtins import helper
from pyprobe.dsl.types import s64
from pyprobe.dsl.values import Value

_TC = ("tc_ingress", "tc_egress")


def _kind(tr) -> str | None:
    return tr.context.attach.kind if tr.context is not None else None


def _flags(tr, node, flags) -> str:
    return "0" if flags is None else tr.scalar(node.args[-1], flags).code      # flags is the last argument


@helper("clone_redirect")
def _clone_redirect(tr, node, ctx, ifindex, flags=None):
    """Send a copy of the packet out of `ifindex` (into it with BPF_F_INGRESS); 0 or -errno.
    The original goes on with the handler's verdict."""
    if _kind(tr) not in _TC:
        tr.fail(node, f"clone_redirect() works in @tc_ingress/@tc_egress handlers (this one is "
                      f"{_kind(tr) or 'a helper function'}): the kernel offers bpf_clone_redirect to tc programs only")
    return Value(f"bpf_clone_redirect({tr.context_param}, {tr.scalar(node.args[1], ifindex).code}, "
                 f"{_flags(tr, node, flags)})", s64)


@helper("redirect")
def _redirect(tr, node, ifindex, flags=None):
    """The verdict that sends the packet out of `ifindex` (TC_ACT_REDIRECT or XDP_REDIRECT):
    `return redirect(ifindex)`."""
    if _kind(tr) not in _TC + ("xdp",):
        tr.fail(node, f"redirect() works in @xdp and @tc_ingress/@tc_egress handlers (this one is "
                      f"{_kind(tr) or 'a helper function'})")
    return Value(f"bpf_redirect({tr.scalar(node.args[0], ifindex).code}, "
                 f"{_flags(tr, node, flags)})", s64)

