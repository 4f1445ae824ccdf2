from metrix.cli.main import main

raise SystemExit(main())
