"""An anonymous in-process client of the real Litestar app over the session's real database."""

from collections.abc import Iterator

import pytest
from litestar.testing import TestClient


@pytest.fixture(scope="module")
def client(app) -> Iterator[TestClient]:
    with TestClient(app=app, raise_server_exceptions=False) as test_client:
        yield test_client
