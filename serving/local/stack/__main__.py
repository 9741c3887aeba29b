"""`python -m serving.local.stack` (see `kfloop serve --help`)."""

import sys

from serving.local.stack.main import main

sys.exit(main())
