"""`python -m serving.transformer --config-file FILE ...` (see main's --help)."""

import sys

from serving.transformer.main import main

sys.exit(main())
