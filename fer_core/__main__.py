"""Entry point of ``python -m fer_core``."""

import sys

from .cli import main

sys.exit(main())
