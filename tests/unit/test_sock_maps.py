"""SockMap, SockHash and XskMap without a kernel: their C definitions, the redirects their
handler methods become, and the refusals at the user's line (recorded kernel view)."""
import importlib.util
import os

import pytest

from pyprobe import SockHash, SockMap, TranslationError, XskMap, sk_msg, u32
from pyprobe.backend.kernel_record import RecordedKernel
from pyprobe.backend.kernel_view import Pretend
from pyprobe.dsl.program_source import translate_program

VIEW = RecordedKernel.load(os.path.join(os.path.dirname(__file__), "data", "kernel-view.json"))

TEMPLATE = '''\
from pyprobe import Program, Hash, SockMap, SockHash, sk_msg, sk_skb_verdict, sock_ops, xdp, u32, u64
class P(Program):
    h = Hash(u32, u64)
    socks = SockMap(4)
    by_port = SockHash(u32)
    @{probe}
    def on(self, ctx):
        {line}
'''
LINE = 8
MSG = 'sk_msg("socks")'


def program(tmp_path, line, probe=MSG):
    path = tmp_path / "sockmaps.py"
    path.write_text(TEMPLATE.format(probe=probe, line=line))
    spec = importlib.util.spec_from_file_location(f"sockmaps_{abs(hash(line + probe))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.P


def test_definitions():
    text = SockMap(4).c_definition("socks")
    assert "__uint(type, 15);   /* BPF_MAP_TYPE_SOCKMAP */" in text and "__type(value, __u64);" in text
    assert "__uint(type, 18);   /* BPF_MAP_TYPE_SOCKHASH */" in SockHash(u32).c_definition("h")
    text = XskMap(2).c_definition("xsks")
    assert "__uint(type, 17);   /* BPF_MAP_TYPE_XSKMAP */" in text and "__uint(max_entries, 2);" in text
    assert repr(SockHash(u32)) == "SockHash(u32, max_entries=1024)" and repr(SockMap(4)) == "SockMap(4)"


def test_msg_redirect_hash_puts_the_key_in_a_local(tmp_path):
    text = translate_program(program(tmp_path, "return self.by_port.msg_redirect_hash(ctx, 5, 1)"),
                             kernel=Pretend(VIEW)).text
    assert "bpf_msg_redirect_hash(ctx, &by_port, &" in text


@pytest.mark.parametrize("line, message, probe", [
    ("return self.socks.msg_redirect_hash(ctx, 1, 0)", "self.socks is a SockMap: redirect through it with "
                                                       "msg_redirect_map()", MSG),
    ("return self.h.msg_redirect_map(ctx, 1, 0)", "msg_redirect_map() is a method of SockMap maps; self.h is a Hash",
     MSG),
    ("return self.socks.sk_redirect_map(ctx, 1, 0)", "sk_redirect_map(ctx, key, flags) works in @sk_skb_verdict "
                                                     "handlers", MSG),
    ("return self.socks.msg_redirect_map(1, 1, 0)", "given the handler's ctx", MSG),
    ("x = self.socks[0]", "self.socks is a SockMap: a handler cannot read or write its entries by key", MSG),
    ("return self.socks.redirect_map(0, 0)", "redirect_map() is a method of DevMap, CpuMap and XskMap", 'xdp("lo")'),
    ("self.socks.sock_map_update(ctx, 0, 0)", "sock_map_update(ctx, key, flags) works in @sock_ops handlers", MSG),
    ("self.h.sock_hash_update(ctx, 0, 0)", "sock_hash_update() is a method of SockMap and SockHash maps; self.h is a "
                                          "Hash", 'sock_ops("/sys/fs/cgroup")'),
])
def test_refusals_name_the_line(tmp_path, line, message, probe):
    with pytest.raises(TranslationError) as err:
        translate_program(program(tmp_path, line, probe), kernel=Pretend(VIEW))
    assert message in err.value.message and err.value.lineno == LINE, str(err.value)


def test_socket_map_decorators_name_the_map():
    with pytest.raises(TypeError, match=r'name the SockMap or SockHash of the Program it attaches to, '
                                        r'e.g. @sk_msg\("socks"\)'):
        sk_msg(3)


def test_xdp_socket_sizes_are_checked_before_any_socket_is_made():
    from pyprobe.xsk import XdpSocket

    with pytest.raises(ValueError, match="frames is a power of two"):
        XdpSocket("lo", frames=3)
    with pytest.raises(ValueError, match="frame_size 2048 or 4096"):
        XdpSocket("lo", frame_size=1000)


@pytest.mark.parametrize("probe, message", [
    ('sk_msg("nope")', "@sk_msg('nope'): nope is not a map of the Program; it attaches to a SockMap or SockHash "
                       "(maps: h, socks, by_port)"),
    ('sk_skb_verdict("h")', "@sk_skb_verdict('h'): h is a Hash; it attaches to a SockMap or SockHash"),
])
def test_socket_map_programs_attach_to_a_socket_map_of_the_program(tmp_path, probe, message):
    with pytest.raises(TranslationError) as err:
        translate_program(program(tmp_path, "pass", probe), kernel=Pretend(VIEW))
    assert message in err.value.message and err.value.lineno == LINE - 1, str(err.value)
