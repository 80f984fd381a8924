"""`python -m sttm_core.sweep` (also the `sttm-sweep` command): see sttm_core.sweep.cli."""
import sys

from .cli import main

sys.exit(main())
