"""`python -m serving.explainer --config-file FILE ...` (see main's --help)."""

import sys

from serving.explainer.main import main

sys.exit(main())
