"""`python -m medcore.jobs JOB_ID`: the training process of one job (see jobs.runner)."""

import sys

from medcore.jobs.runner import run

if __name__ == "__main__":
    sys.exit(run(sys.argv[1]))
