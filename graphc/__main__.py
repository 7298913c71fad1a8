"""``python -m graphc ...``: the same as the ``graphc`` command."""

from .cli.main import main

raise SystemExit(main())
