"""`python -m serving.collector` (see `kfloop collector --help`)."""

import sys

from serving.collector.app import main

sys.exit(main())
