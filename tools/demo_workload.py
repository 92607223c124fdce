"""Something for `make demo` to see: processes made with fork (the clone syscall)
and with posix_spawn (clone3), a few times a second for a few seconds."""
import os
import subprocess
import time

time.sleep(1.0)                      # let the lesson attach
for _ in range(6):
    if os.fork() == 0:
        os._exit(0)
    os.wait()
    subprocess.run(["true"])
    time.sleep(0.6)
