"""`python -m serving.local.stack --config-file FILE ...` (see main's --help)."""

import sys

from serving.local.stack.main import main

sys.exit(main())
