import pytest
import responses

import bor_openai_compat as boc
from server import Server
from helpers import BASE, CANARY_KEY


@pytest.fixture
def mocked():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


@pytest.fixture
def client():
    with boc.Client(BASE, api_key=CANARY_KEY, model="test-model", max_retries=0) as c:
        yield c


@pytest.fixture
def fast_retries(monkeypatch):
    """Keep our backoff but make it short, so retry tests run quickly."""
    monkeypatch.setattr(boc, "_RETRY_BASE", 0.01)


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "OPENAI_MODEL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def _fault_server():
    server = Server()
    yield server
    server.close(wait=0)  # scripts that sleep (stall) need not be waited for


@pytest.fixture
def fault_server(_fault_server):
    _fault_server.script()
    return _fault_server


@pytest.fixture
def make_client(fault_server, fast_retries):
    """Clients of the fault server, with the canary key and quick retries."""

    def make(**kwargs):
        kwargs.setdefault("max_retries", 2)
        return boc.Client(fault_server.url, api_key=CANARY_KEY, model="m", **kwargs)

    return make
