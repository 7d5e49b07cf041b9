"""``python -m stream_app.cli``: the same as the ``engagement-scorer`` command."""

import sys

from stream_app.cli.main import main

sys.exit(main())
