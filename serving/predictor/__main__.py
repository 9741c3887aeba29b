"""`python -m serving.predictor` (see `kfloop predictor --help`)."""

import sys

from serving.predictor.main import main

sys.exit(main())
