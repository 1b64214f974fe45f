"""``python -m ticketflow``: the same as the ``ticketflow`` command."""

import sys

from ticketflow.cli.main import main

sys.exit(main())
