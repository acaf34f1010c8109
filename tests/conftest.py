"""Fixtures shared by every test directory (see ``localuser``)."""

from localuser import attacker, attacker_dir, shared_dir

__all__ = ["attacker", "attacker_dir", "shared_dir"]
