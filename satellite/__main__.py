"""``python -m hearth.satellite``."""

import sys

from .cli import main

sys.exit(main())
