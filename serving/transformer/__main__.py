"""`python -m serving.transformer` (see `kfloop transformer --help`)."""

import sys

from serving.transformer.main import main

sys.exit(main())
