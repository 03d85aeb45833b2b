"""``python -m aiocompute.cli``: the same as the ``aiocompute`` command."""

from . import main

raise SystemExit(main())
