"""``python -m statestore``: the statestore CLI."""

from .cli import main

raise SystemExit(main())
