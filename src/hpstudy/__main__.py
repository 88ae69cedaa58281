"""`python -m hpstudy`: the `hpstudy` command (hpstudy.cli)."""

from hpstudy.cli import main

raise SystemExit(main())
