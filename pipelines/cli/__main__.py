"""`python -m pipelines.cli ...`: how Ray jobs and the scheduler start genpipe."""

import sys

from pipelines.cli.app import main

sys.exit(main())
