"""End-to-end tests against a real n8n: skipped unless N8N_E2E=1 (set by scripts/e2e-n8n.sh).

With N8N_E2E=1 and no usable n8n install they fail loudly instead of passing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from n8n_harness import E2E, BufferingProxy, CuttingProxy, N8n, running_n8n, running_nginx

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if E2E:
        return
    skip = pytest.mark.skip(reason="needs a real n8n: run `bash scripts/e2e-n8n.sh` (sets N8N_E2E=1)")
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def n8n() -> Iterator[N8n]:
    with running_n8n() as server:
        yield server


@pytest.fixture(scope="session")
def nginx(n8n: N8n) -> Iterator[str]:
    """deploy/nginx.conf in front of n8n (skipped when nginx is not installed)."""
    with running_nginx(int(n8n.webhook_base_url.rsplit(":", 1)[1])) as url:
        yield url


IMPATIENT_READ_TIMEOUT = "1s"


@pytest.fixture(scope="session")
def impatient_nginx(n8n: N8n) -> Iterator[str]:
    """deploy/nginx.conf with the webhooks' proxy_read_timeout at 1 s: a workflow that says nothing for longer
    gets nginx's 504 (skipped when nginx is not installed)."""
    port = int(n8n.webhook_base_url.rsplit(":", 1)[1])
    with running_nginx(port, webhook_read_timeout=IMPATIENT_READ_TIMEOUT) as url:
        yield url


@pytest.fixture
def cutting_proxy(n8n: N8n) -> Iterator[Callable[..., CuttingProxy]]:
    """Makes CuttingProxy instances in front of n8n's webhooks: `cutting_proxy(after=3, how="reset")`."""
    made: list[CuttingProxy] = []

    def make(after: int, how: str = "reset") -> CuttingProxy:
        made.append(CuttingProxy(n8n.webhook_base_url, after, how))
        return made[-1]

    yield make
    for proxy in made:
        proxy.close()


@pytest.fixture
def buffering_proxy(n8n: N8n) -> Iterator[str]:
    proxy = BufferingProxy(n8n.webhook_base_url)
    try:
        yield proxy.url
    finally:
        proxy.close()
