"""``python -m services.cli``: the ``mailroom`` command."""

import sys

from services.cli import main

sys.exit(main())
