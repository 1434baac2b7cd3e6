"""Run a sweep from a TOML file with the logging run command (for the interruption test).

python driver.py CONFIG OUT LOG WORKERS
"""

import signal
import sys
from pathlib import Path

from refprune import sweep

if __name__ == "__main__":
    # the test's SIGINT must raise KeyboardInterrupt even if this process inherited SIGINT
    # ignored (a background job of a shell without job control does)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    config, out, log, workers = sys.argv[1:5]
    job = [sys.executable, str(Path(__file__).with_name("logging_job.py")), log]
    s = sweep.run(config, out, workers=int(workers), job_command=job)
    print(f"skipped {s.skipped} completed {s.completed} failed {len(s.failed)}")
