from kfloop.cli import main

raise SystemExit(main())
