"""`python -m serving.follower` (see `kfloop features follow --help`)."""

import sys

from serving.follower.main import main

sys.exit(main())
