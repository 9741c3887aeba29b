"""`python -m serving.audit` (see `kfloop audit sink --help`)."""

import sys

from serving.audit.app import main

sys.exit(main())
