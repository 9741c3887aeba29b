"""`python -m serving.local.router --config-file FILE ...` (see main's --help)."""

import sys

from serving.local.router.app import main

sys.exit(main())
