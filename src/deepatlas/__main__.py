from deepatlas.cli import main

raise SystemExit(main())
