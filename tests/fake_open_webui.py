"""Stand-ins for Open WebUI's file storage and files table, with the signatures of 0.12.4's
(`Storage.upload_file`, `Files.insert_new_file`, `FileForm`), put where the pipe imports them from. The
real ones are used in tests/owui/test_files_e2e.py."""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest


def fake_open_webui_storage(monkeypatch: pytest.MonkeyPatch, awaitable: bool = True) -> dict[str, Any]:
    """What the pipe stores: the bytes, the storage's file name and tags, the user and the files row's form.
    `awaitable`: `Files.insert_new_file` is a coroutine (0.9 and later) or answers at once (older)."""
    stored: dict[str, Any] = {}

    class Storage:
        @staticmethod
        def upload_file(file: Any, filename: str, tags: dict[str, str]) -> tuple[bytes, str]:
            stored.update(data=file.read(), filename=filename, tags=tags)
            return stored["data"], f"/data/uploads/{filename}"

    class FileForm:
        def __init__(self, **fields: Any) -> None:
            self.fields = fields

    def insert(user_id: str, form: FileForm) -> object:
        stored.update(user_id=user_id, form=form.fields)
        return object()

    async def insert_later(user_id: str, form: FileForm) -> object:
        return insert(user_id, form)

    files = types.SimpleNamespace(insert_new_file=insert_later if awaitable else insert)
    for name, attributes in {
        "open_webui": {},
        "open_webui.models": {},
        "open_webui.models.files": {"Files": files, "FileForm": FileForm},
        "open_webui.storage": {},
        "open_webui.storage.provider": {"Storage": types.SimpleNamespace(upload_file=Storage.upload_file)},
    }.items():
        monkeypatch.setitem(sys.modules, name, types.SimpleNamespace(**attributes))
    return stored
