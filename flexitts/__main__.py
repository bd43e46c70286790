"""`python -m flexitts` runs the command-line interface."""
from flexitts.cli.main import main

raise SystemExit(main())
