"""common.follow(): Ctrl-C while a batch of records prints loses none of the batch (a slow tool
under load reads several records in one batch; the interrupt used to drop the rest)."""
import os
import signal

from pyprobe.tools import common


class Stream:
    lost = 0

    def __init__(self):
        self.later = [7]

    def batches(self, duration=None):
        yield [1, 2, 3]
        yield [4, 5]                   # never read: Ctrl-C came during the first batch

    def drain(self):
        out, self.later = self.later, []
        return out


def test_ctrl_c_during_a_batch_keeps_the_rest_of_it():
    seen = []

    def on_record(r):
        seen.append(r)
        if r == 1:
            os.kill(os.getpid(), signal.SIGINT)       # Ctrl-C as the first record prints

    old = signal.getsignal(signal.SIGINT)
    try:
        common.follow(Stream(), on_record)
    finally:
        signal.signal(signal.SIGINT, old)
    assert seen == [1, 2, 3, 7]        # the whole batch, then what the buffer still held
