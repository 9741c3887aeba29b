"""`python -m serving.router --config-file FILE ...` (see main's --help)."""

import sys

from serving.router.app import main

sys.exit(main())
