# The pytester fixture tests the plugin by running whole pytest sessions; it can only be
# enabled from the rootdir's conftest.
import pytest

pytest_plugins = ["pytester"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--full-load",
        action="store_true",
        help="run the load tests at full size (20,000 requests) instead of the CI size",
    )
