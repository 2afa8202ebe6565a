"""`python -m apprentice`: the `apprentice` command (what `torchrun -m apprentice train` runs
in each process), with its exit codes."""

import sys

from apprentice.cli.main import main

sys.exit(main())
