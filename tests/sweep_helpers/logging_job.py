"""A run command for tests: logs each attempt, and can crash one run on purpose.

    python logging_job.py LOG [SEED:RULE | kill-worker:SEED:RULE]

Appends "start <run_id>" before and "end <run_id>" after each run to LOG. For
the run whose seed and rule match, SEED:RULE ends the run's process with
``os._exit(7)`` halfway (after "start", before any result), as a run killed
mid-way would; kill-worker:SEED:RULE kills the pool worker that started it, as
an outside kill of a worker would.
"""

import json
import os
import signal
import sys
import time

from refprune.sweep.job import exit_with_parent, handle


def log(path: str, line: str) -> None:
    with open(path, "a", encoding="utf-8") as fh:  # one short append: atomic on POSIX
        fh.write(line + "\n")


def main() -> int:
    exit_with_parent()
    request = json.loads(sys.stdin.read())
    path = sys.argv[1]
    log(path, f"start {request['run_id']}")
    cfg = request["config"]
    this = f"{cfg['seed']}:{cfg['pruning']['rule']}"
    if len(sys.argv) > 2 and sys.argv[2] == this:
        os._exit(7)
    if len(sys.argv) > 2 and sys.argv[2] == f"kill-worker:{this}":
        os.kill(os.getppid(), signal.SIGKILL)  # the pool's worker, killed from outside
        time.sleep(5)  # ended by exit_with_parent
    answer = handle(request)
    log(path, f"end {request['run_id']}")
    sys.stdout.write(answer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
