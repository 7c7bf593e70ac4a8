"""``python -m pytest_deproxy`` is the ``deproxy`` command."""

import sys

from .cli import main

sys.exit(main())
