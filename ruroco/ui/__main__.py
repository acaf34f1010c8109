"""``python -m ruroco.ui``: the same as ``ruroco-ui``."""

import sys

from ruroco.ui.cli import main

sys.exit(main())
