"""Ending a server the end-to-end tests started (n8n, nginx, Open WebUI) together with its children.

Standard library only: tests/e2e (the unit suite's venv) and tests/owui (Open WebUI's venv) both import it.
"""

from __future__ import annotations

import os
import signal
import subprocess


def stop_process_group(process: subprocess.Popen[bytes] | None, grace: float = 20) -> None:
    """SIGTERM the process group `process` leads (started with start_new_session=True), SIGKILL it
    after `grace` seconds: n8n's task runner and Open WebUI's workers must not outlive the test run,
    and nothing outside that group is touched."""
    if process is None or process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
    except ProcessLookupError:
        pass
