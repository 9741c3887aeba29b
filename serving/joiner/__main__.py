"""`python -m serving.joiner [--config PATH] [--host H] [--port P] [--wal-dir DIR] [--log-uri URI]`."""

import sys

from serving.joiner.app import main

sys.exit(main())
