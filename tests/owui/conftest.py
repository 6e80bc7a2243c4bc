"""The end-to-end tests run only through scripts/e2e-openwebui.sh, which installs Open WebUI and sets OWUI_E2E=1.

In the normal `python -m pytest` run they are collected and skipped, so nothing here may import
anything that only the Open WebUI environment has.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
# OWUI_PIPE_FILE: run the same tests against another copy of the pipe (e.g. to see them fail on a broken one).
PIPE_FILE = Path(os.environ.get("OWUI_PIPE_FILE") or ROOT / "pipe_n8n_stream.py")
E2E = os.environ.get("OWUI_E2E") == "1"
# OWUI_WORKERS=2 (scripts/e2e-openwebui.sh's second run): Open WebUI as production runs it with several
# workers, coordinated through the Redis at OWUI_REDIS_URL (websocket manager, tasks, Stop).
WORKERS = int(os.environ.get("OWUI_WORKERS") or "1")

sys.path.insert(0, str(HERE.parent))  # loopback.py, the scripted fake n8n webhook
sys.path.insert(0, str(HERE))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if E2E:
        return
    skip = pytest.mark.skip(reason="needs a real Open WebUI: run scripts/e2e-openwebui.sh")
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(skip)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed end-to-end test shows the end of Open WebUI's log under its traceback."""
    outcome = yield
    report = outcome.get_result()
    server = getattr(item, "funcargs", {}).get("owui")
    if report.failed and server is not None:
        report.sections.append(("Open WebUI log (last lines)", server.log_tail(40)))


@pytest.fixture(scope="session")
def owui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A running Open WebUI (0.12.4, or OWUI_E2E_VERSION) with the pipe (and the thread probe) installed and active."""
    from owui_host import PIPE_ID, PROBE_FUNCTION, PROBE_ID, Admin, OpenWebUI

    venv = Path(os.environ.get("OWUI_VENV", sys.prefix))
    executable = venv / "bin" / "open-webui"
    if not executable.exists():
        pytest.fail(f"no Open WebUI at {executable}: run scripts/e2e-openwebui.sh", pytrace=False)
    pidfile = os.environ.get("OWUI_PIDFILE")
    extra: dict[str, str] = {}
    if WORKERS > 1:
        redis_url = os.environ.get("OWUI_REDIS_URL") or pytest.fail(
            "OWUI_WORKERS > 1 needs Redis (OWUI_REDIS_URL): run scripts/e2e-openwebui.sh", pytrace=False
        )
        extra = {
            "UVICORN_WORKERS": str(WORKERS),
            "WEBSOCKET_MANAGER": "redis",
            "REDIS_URL": redis_url,
            "WEBSOCKET_REDIS_URL": redis_url,
            "REDIS_KEY_PREFIX": f"owui-e2e-{os.getpid()}",
        }
    server = OpenWebUI(executable, tmp_path_factory.mktemp("owui"), Path(pidfile) if pidfile else None, extra)
    try:
        server.start()
        admin = Admin(server.url)
        admin.install_function(PIPE_ID, "n8n Stream", PIPE_FILE.read_text("utf-8"))
        admin.install_function(PROBE_ID, "e2e thread probe", PROBE_FUNCTION)
        admin.models(refresh=True)
        server.admin = admin  # type: ignore[attr-defined]
        yield server
    finally:
        server.stop()
        print(f"\nOpen WebUI log: {server.log_path}")


@pytest.fixture
def admin(owui: object) -> object:
    return owui.admin  # type: ignore[attr-defined]


@pytest.fixture
def browser(admin: object) -> Iterator[object]:
    from owui_host import Browser

    tab = Browser(admin)  # type: ignore[arg-type]
    yield tab
    tab.close()
