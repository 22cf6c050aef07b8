"""`python -m wattbench ...` is the `wattbench` command."""
import sys

from wattbench.cli import main

sys.exit(main())
