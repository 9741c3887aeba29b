"""`python -m serving.stack --config-file FILE ...` (see main's --help)."""

import sys

from serving.stack.main import main

sys.exit(main())
