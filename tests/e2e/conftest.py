"""End-to-end tests against a real n8n: skipped unless N8N_E2E=1 (set by scripts/e2e-n8n.sh).

With N8N_E2E=1 and no usable n8n install they fail loudly instead of passing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from n8n_harness import E2E, BufferingProxy, N8n, running_n8n, running_nginx

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


@pytest.fixture
def buffering_proxy(n8n: N8n) -> Iterator[str]:
    proxy = BufferingProxy(n8n.webhook_base_url)
    try:
        yield proxy.url
    finally:
        proxy.close()
