"""The pytest side: registered through the `pytest11` entry point, so installing the
package is enough.

- `frontdoor`: a running frontdoor for one test, stopped after it (pass or fail).
- `frontdoor_config`: what it runs. By default the `frontdoor_config` ini option (a path
  relative to the rootdir, `services.yaml` if unset); a test overrides it with
  `@pytest.mark.frontdoor_config(TEXT_OR_PATH)`, a module or conftest by defining a
  fixture of the same name.
"""

from __future__ import annotations

from typing import Iterator

import pytest

from .server import Frontdoor


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "frontdoor_config",
        "the services.yaml the `frontdoor` fixture runs, relative to the rootdir",
        default="services.yaml",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "frontdoor_config(config): the configuration (YAML text or a path) this test's "
        "`frontdoor` fixture runs",
    )


@pytest.fixture
def frontdoor_config(request: pytest.FixtureRequest) -> str:
    marker = request.node.get_closest_marker("frontdoor_config")
    if marker is not None:
        return marker.args[0]
    return str(request.config.rootpath / request.config.getini("frontdoor_config"))


@pytest.fixture
def frontdoor(frontdoor_config: str) -> Iterator[Frontdoor]:
    with Frontdoor(frontdoor_config) as running:
        yield running
