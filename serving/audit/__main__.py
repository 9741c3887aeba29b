"""`python -m serving.audit [--config PATH] [--host H] [--port P] [--store-url URL]`."""

import sys

from serving.audit.app import main

sys.exit(main())
