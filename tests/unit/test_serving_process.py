"""Background priority of the stack's off-path processes (explainer, audit sink): every thread, including the
ones started after it was applied, runs under SCHED_IDLE. TensorFlow imported without
Keras's optional imports."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from serving.common.process import Background

pytestmark = pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux's")

_CHILD = """
import threading, time
threading.Thread(target=time.sleep, args=(30,), daemon=True).start()  # before: as a ready service's
print("started", flush=True)
time.sleep(0.5)
for _ in range(2):  # after: they take their creator's priority
    threading.Thread(target=time.sleep, args=(30,), daemon=True).start()
print("more", flush=True)
time.sleep(30)
"""


def test_every_thread_of_a_background_process_runs_idle_and_rankings_keep_their_priority():
    child = subprocess.Popen([sys.executable, "-c", _CHILD], stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None and child.stdout.readline() == b"started\n"
        Background().apply(child.pid)
        assert child.stdout.readline() == b"more\n"
        threads = [int(t) for t in os.listdir(f"/proc/{child.pid}/task")]
        assert len(threads) == 4
        assert {os.sched_getscheduler(t) for t in threads} == {os.SCHED_IDLE}
        assert os.sched_getscheduler(0) == os.SCHED_OTHER  # the caller is untouched
    finally:
        child.kill()
        child.wait()


def test_without_idle_the_threads_are_niced():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        time.sleep(0.1)
        Background(nice=7, idle=False).apply(child.pid)
        threads = [int(t) for t in os.listdir(f"/proc/{child.pid}/task")]
        assert {os.getpriority(os.PRIO_PROCESS, t) for t in threads} == {7}
    finally:
        child.kill()
        child.wait()


@pytest.mark.serving  # the predictor's environment: scikit-learn is there only because alibi brings it
def test_tensorflow_is_imported_without_the_optional_imports_of_keras():
    """scikit-learn and matplotlib stay out of a process that imports TensorFlow for a SavedModel (~6 s of CPU),
    and can still be imported after."""
    script = (
        "import sys; from serving.common.model_io import import_tensorflow; import_tensorflow(); "
        "print(sorted(m for m in ('sklearn', 'matplotlib') if m in sys.modules)); import sklearn; print('ok')"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.stdout.split() == ["[]", "ok"], done.stderr[-2000:]
