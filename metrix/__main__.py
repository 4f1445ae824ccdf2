from metrix.cli import main

raise SystemExit(main())
