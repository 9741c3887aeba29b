"""`python -m serving.collector [--config PATH] [--host H] [--port P]`."""

import sys

from serving.collector.app import main

sys.exit(main())
