"""Where the client keeps its lock and counter.

Plain ``os.path`` strings instead of ``pathlib``: this runs on every ``send`` and pathlib's
import chain would cost the cold start several milliseconds.
"""

from __future__ import annotations

import os
import stat

from ruroco.errors import RurocoError, qpath

CONF_DIR_ENV = "RUROCO_CONF_DIR"


def conf_dir_path(environ: dict[str, str] | None = None) -> str:
    """``RUROCO_CONF_DIR`` verbatim, else ``$HOME/.config/ruroco``, else the CWD."""
    env = os.environ if environ is None else environ
    explicit = env.get(CONF_DIR_ENV)
    if explicit is not None:
        return explicit
    home = env.get("HOME")
    if home is not None:
        return os.path.join(home, ".config", "ruroco")
    return os.getcwd()


def ensure_conf_dir(path: str | os.PathLike[str]) -> str:
    """Create ``path`` recursively; an existing directory is fine, anything else is an error."""
    text = os.fspath(path)
    if not text:
        return text  # like Rust's create_dir_all(""): nothing to create, files land in the CWD
    try:  # the common case, a directory already there: one stat instead of makedirs, whose
        # mkdir fails with EEXIST (an exception costs a forked worker's knock ~40 us)
        if stat.S_ISDIR(os.stat(text).st_mode):
            return text
    except OSError:
        pass
    try:
        os.makedirs(text, exist_ok=True)
    except OSError as exc:
        raise RurocoError(f"Could not create config dir {qpath(text)}") from exc
    return text


def resolve_conf_dir(environ: dict[str, str] | None = None) -> str:
    """The conf dir every subcommand uses, created if missing (not canonicalized)."""
    return ensure_conf_dir(conf_dir_path(environ))
