"""An in-process client of the real Litestar app over the session's real database."""

from collections.abc import Iterator

import pytest
from litestar.testing import TestClient

from appliance.substrate.db import Database
from appliance.web.app import create_app


@pytest.fixture(scope="module")
def client(db: Database) -> Iterator[TestClient]:
    with TestClient(app=create_app(db), raise_server_exceptions=False) as test_client:
        yield test_client
