"""`python -m serving.local.router` (see `kfloop router --help`)."""

import sys

from serving.local.router.app import main

sys.exit(main())
