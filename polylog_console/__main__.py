from polylog_console.cli import main

raise SystemExit(main())
