"""`python -m medcore.jobs JOB_ID`: the training process of one job (see jobs.runner)."""

import sys

from medcore.jobs.runner import run
from medcore.jobs.store import JobError

if __name__ == "__main__":
    try:
        sys.exit(run(sys.argv[1]))
    except JobError as exc:  # a malformed job id: nothing was created
        print(f"medcore: {exc}", file=sys.stderr)
        sys.exit(2)
