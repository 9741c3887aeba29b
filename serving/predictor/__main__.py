"""`python -m serving.predictor --config-file FILE ...` (see main's --help)."""

import sys

from serving.predictor.main import main

sys.exit(main())
