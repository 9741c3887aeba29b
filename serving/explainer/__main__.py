"""`python -m serving.explainer` (see `kfloop explainer --help`)."""

import sys

from serving.explainer.main import main

sys.exit(main())
