"""Start frontdoor from a test: `Frontdoor(config)` as a context manager, or the pytest
fixture `frontdoor` this package registers (see `frontdoor_testing.pytest_plugin`)."""

from .server import Frontdoor, FrontdoorError, find_binary

__all__ = ["Frontdoor", "FrontdoorError", "find_binary"]
