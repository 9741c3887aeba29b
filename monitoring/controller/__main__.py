"""`python -m monitoring.controller [--config PATH] [--host H] [--port P] [--mode local|cluster] [--state-dir DIR]`."""

import sys

from monitoring.controller.app import main

sys.exit(main())
