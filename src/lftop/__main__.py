from lftop.cli import main

raise SystemExit(main())
