"""Handler methods of SockMap and SockHash (dsl/sock_maps.py): redirecting a message
(sk_msg) or a received skb (sk_skb verdict) to the socket of a slot, each returning the
verdict (SK_PASS when the redirect was set up, SK_DROP when the slot is empty); and
putting a @sock_ops handler's socket in the map (0 or a negative errno)."""
from __future__ import annotations

from pyprobe.dsl.builtins import _key, map_method
from pyprobe.dsl.types import s64
from pyprobe.dsl.values import ContextRef, Value

# method: (the program kind it works in, the map kind, the kernel helper)
_REDIRECTS = {
    "msg_redirect_map": ("sk_msg", "SockMap", "bpf_msg_redirect_map"),
    "msg_redirect_hash": ("sk_msg", "SockHash", "bpf_msg_redirect_hash"),
    "sk_redirect_map": ("sk_skb_verdict", "SockMap", "bpf_sk_redirect_map"),
    "sk_redirect_hash": ("sk_skb_verdict", "SockHash", "bpf_sk_redirect_hash"),
}


def _redirect(method: str):
    program_kind, map_kind, c_helper = _REDIRECTS[method]

    def translate(tr, node, ref, ctx, key, flags=None):
        spec_kind = type(ref.spec).__name__
        if spec_kind not in ("SockMap", "SockHash"):
            tr.fail(node.func, f"{method}() is a method of {map_kind} maps; self.{ref.name} is a {spec_kind}")
        if spec_kind != map_kind:
            other = {v[:2]: k for k, v in _REDIRECTS.items()}[(program_kind, spec_kind)]
            tr.fail(node.func, f"self.{ref.name} is a {spec_kind}: redirect through it with {other}()")
        kind = tr.context.attach.kind if tr.context is not None else None
        if kind != program_kind or not isinstance(ctx, ContextRef):
            decorator = "@sk_msg" if program_kind == "sk_msg" else "@sk_skb_verdict"
            tr.fail(node, f"{method}(ctx, key, flags) works in {decorator} handlers, given the handler's ctx "
                          f"(this one is {kind or 'a helper function'})")
        f = "0" if flags is None else tr.scalar(node.args[2], flags).code
        if spec_kind == "SockMap":
            return Value(f"{c_helper}({tr.context_param}, &{ref.name}, {tr.scalar(node.args[1], key).code}, {f})", s64)
        tmp = tr.temp(ref.spec.key, "k")
        tr.emit(f"{tmp} = {_key(tr, node, ref, node.args[1], key, redirect=True)};")
        return Value(f"{c_helper}({tr.context_param}, &{ref.name}, &{tmp}, {f})", s64)
    return translate


for _method in _REDIRECTS:
    map_method(_method)(_redirect(_method))


@map_method("sock_map_update")
@map_method("sock_hash_update")
def _sock_map_update(tr, node, ref, ctx, key, flags=None):
    """bpf_sock_map_update / bpf_sock_hash_update: put the @sock_ops handler's socket in the map."""
    spec_kind = type(ref.spec).__name__
    method = node.func.attr
    if spec_kind not in ("SockMap", "SockHash"):
        tr.fail(node.func, f"{method}() is a method of SockMap and SockHash maps; self.{ref.name} is a {spec_kind}")
    kind = tr.context.attach.kind if tr.context is not None else None
    if kind != "sock_ops" or not isinstance(ctx, ContextRef):
        tr.fail(node, f"{method}(ctx, key, flags) works in @sock_ops handlers, given the handler's ctx "
                      f"(this one is {kind or 'a helper function'})")
    c_helper = "bpf_sock_map_update" if spec_kind == "SockMap" else "bpf_sock_hash_update"
    f = "0" if flags is None else tr.scalar(node.args[2], flags).code
    tmp = tr.temp(ref.spec.key, "k")
    tr.emit(f"{tmp} = {_key(tr, node, ref, node.args[1], key, redirect=True)};")
    return Value(f"{c_helper}({tr.context_param}, &{ref.name}, &{tmp}, {f})", s64)
