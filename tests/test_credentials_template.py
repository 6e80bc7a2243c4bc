"""n8n/credentials.example.json is what a user fills in for `n8n import:credentials`: it must name every
credential the shipped workflows point at, by the same id, name and type, or the import leaves red nodes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

N8N = Path(__file__).resolve().parents[1] / "n8n"


def referenced() -> dict[str, tuple[str, str]]:
    """id -> (name, type) of every credential a shipped workflow's node uses."""
    found: dict[str, tuple[str, str]] = {}
    for path in sorted(N8N.glob("*.json")):
        if path.name == "credentials.example.json":
            continue
        for node in json.loads(path.read_text())["nodes"]:
            for kind, ref in (node.get("credentials") or {}).items():
                found[ref["id"]] = (ref["name"], kind)
    return found


def template() -> list[dict[str, Any]]:
    return list(json.loads((N8N / "credentials.example.json").read_text()))


def test_the_template_has_exactly_the_workflows_credentials() -> None:
    assert {c["id"]: (c["name"], c["type"]) for c in template()} == referenced()


def test_the_template_says_what_to_fill_in() -> None:
    by_type = {c["type"]: c["data"] for c in template()}
    assert by_type["httpHeaderAuth"]["name"] == "Authorization"
    assert by_type["httpHeaderAuth"]["value"].startswith("Bearer PASTE-")
    assert by_type["jwtAuth"] == {"keyType": "passphrase", "secret": by_type["jwtAuth"]["secret"], "algorithm": "HS256"}
    assert by_type["jwtAuth"]["secret"].startswith("PASTE-")
    assert by_type["ollamaApi"]["baseUrl"] == "http://localhost:11434"
    assert by_type["anthropicApi"]["apiKey"].startswith("PASTE-")
