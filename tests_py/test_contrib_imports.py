"""The core package never imports the frameworks of errands.contrib (optional extras):
not on ``import errands``, not for the CLI, not for enqueueing or running a worker."""

from __future__ import annotations

import json
import subprocess
import sys

FRAMEWORKS = ["django", "sqlalchemy", "fastapi", "starlette"]


def frameworks_imported_by(code: str) -> list[str]:
    report = f"print(json.dumps([m for m in {FRAMEWORKS!r} if m in sys.modules]))"
    probe = f"{code}\nimport json, sys\n{report}"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    result: list[str] = json.loads(out.splitlines()[-1])
    return result


def test_core_and_cli_import_no_framework() -> None:
    code = (
        "import errands, errands.cli, errands.enqueue, errands.runner, errands.worker\n"
        "from errands.cli import app\n"
        "for name in errands.__all__: getattr(errands, name)"
    )
    assert frameworks_imported_by(code) == []


def test_the_django_package_imports_django_only_when_used() -> None:
    # INSTALLED_APPS imports it before Django's app registry is ready.
    assert frameworks_imported_by("import errands.contrib.django") == []
