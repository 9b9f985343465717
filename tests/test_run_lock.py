"""One pipeline run per results folder: a second one gets one sentence naming the first (taskcodec.run_lock)."""

import subprocess
import sys

import pytest

from taskcodec import run_lock
from taskcodec.errors import UserError

HOLD = "import sys, time; from taskcodec import run_lock; run_lock.hold(sys.argv[1]); print('held', flush=True); " \
       "time.sleep(120)"


def test_a_running_pipeline_stops_a_second_one_and_a_killed_one_leaves_no_lock(tmp_path):
    results = tmp_path / "results"
    run_lock.check_free(results)  # no run yet
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(results)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(UserError, match=rf"^another pipeline run \(pid {holder.pid} on .+, started .+\) is "
                                            rf"writing to {results}/; wait for it to end or stop it, then run again$"):
            run_lock.check_free(results)
        run_lock.check_free(tmp_path / "other")  # another results folder is free
        script = subprocess.run([sys.executable, "-m", "taskcodec.run_lock", str(results)], capture_output=True,
                                text=True)  # what scripts/dvc_restore.sh runs first
        assert script.returncode == 2 and script.stderr.startswith("error: another pipeline run (pid ")
    finally:
        holder.kill()
        holder.wait()
    run_lock.check_free(results)  # released by the kernel, however the run ended
