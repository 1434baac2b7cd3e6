"""A run command for tests: logs each attempt, and can crash one run on purpose.

    python logging_job.py LOG [CRASH_SEED:CRASH_RULE]

Appends "start <run_id>" before and "end <run_id>" after each run to LOG, and
ends its process with ``os._exit(7)`` halfway through the run whose seed and
rule match (after "start", before any result), as a worker killed mid-run would.
"""

import json
import os
import sys

from refprune.sweep.job import exit_with_parent, handle


def log(path: str, line: str) -> None:
    with open(path, "a", encoding="utf-8") as fh:       # one short append: atomic on POSIX
        fh.write(line + "\n")


def main() -> int:
    exit_with_parent()
    request = json.loads(sys.stdin.read())
    path = sys.argv[1]
    log(path, f"start {request['run_id']}")
    cfg = request["config"]
    if len(sys.argv) > 2 and sys.argv[2] == f"{cfg['seed']}:{cfg['pruning']['rule']}":
        os._exit(7)
    answer = handle(request)
    log(path, f"end {request['run_id']}")
    sys.stdout.write(answer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
