"""``python -m statestore.demo ROLE``: one of the demo's helper processes."""

import sys

from .roles import _role_main

raise SystemExit(_role_main(sys.argv[1:]))
