"""``ruroco-ui``: the terminal UI (the ``ui`` extra; docs/ui.md). Only ``app`` needs Textual:
``cli`` must load without it to say how to install it, and ``knock`` is plain client code."""
