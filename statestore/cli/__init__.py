"""The ``statestore`` command line (also ``python -m statestore``), a face on the public API.

``_main`` holds the commands and the argument parsing; the pure pieces they render with live
beside it: ``_format`` (docker's columns and ``--format`` contexts), ``_template`` (the Go
template subset those formats use) and ``_times`` (``--since``/``--until``).
"""

from ._main import DEFAULT_URL, build_parser, main

__all__ = ["DEFAULT_URL", "build_parser", "main"]
