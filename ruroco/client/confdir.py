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
    """Create ``path`` recursively (the conf dir itself mode 0700); an existing directory is
    fine unless every user can write it, anything else is an error.

    A directory every user can write (``/tmp``, the working-directory fallback without
    ``HOME``) is refused: anyone could put the lock, the counter or ``counter.next`` there
    first, hold the lock, or choose the counter (docs/security.md, "The client's files")."""
    text = os.fspath(path)
    if not text:  # like Rust's create_dir_all(""): nothing to create, files land in the CWD
        try:
            _refuse_shared(os.getcwd(), os.stat(".").st_mode)
        except OSError as exc:
            raise RurocoError("Could not use the working directory as config dir") from exc
        return text
    try:  # the common case, a directory already there: one stat instead of makedirs, whose
        # mkdir fails with EEXIST (an exception costs a forked worker's knock ~40 us)
        st = os.stat(text)
    except OSError:
        pass
    else:
        if stat.S_ISDIR(st.st_mode):
            _refuse_shared(text, st.st_mode)
            return text
    try:
        os.makedirs(text, 0o700, exist_ok=True)  # 0700 only for the last, new, component
    except OSError as exc:
        raise RurocoError(f"Could not create config dir {qpath(text)}") from exc
    try:
        _refuse_shared(text, os.stat(text).st_mode)  # there already after all (a race)
    except OSError as exc:
        raise RurocoError(f"Could not create config dir {qpath(text)}") from exc
    return text


def _refuse_shared(text: str, mode: int) -> None:
    if mode & stat.S_IWOTH:
        raise RurocoError(
            f"Config dir {qpath(text)} can be written by every user (mode"
            f" {stat.S_IMODE(mode):o}): use a directory of your own ({CONF_DIR_ENV})"
        )


def resolve_conf_dir(environ: dict[str, str] | None = None) -> str:
    """The conf dir every subcommand uses, created if missing (not canonicalized)."""
    return ensure_conf_dir(conf_dir_path(environ))
