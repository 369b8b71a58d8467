"""Every family; importing this package registers them all with the Auto classes."""

from . import reference  # noqa: F401
