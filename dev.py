#!/usr/bin/env python3
"""Bootstrap and run closeconv with nothing installed but Python 3.11+.

    python3 dev.py demo    # install from uv.lock, then: sample data → pipeline → summary
    python3 dev.py test    # install from uv.lock (with test tools), then run the whole test suite

Installs are exact, from the lock file (`uv sync --locked`). uv itself comes from PyPI at a
pinned version into .tools/ when it is not already on PATH.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
UV_VERSION = "0.13.8"
TOOLS = ROOT / ".tools"


def find_uv() -> str:
    local = TOOLS / "bin" / "uv"
    if local.exists():
        return str(local)
    on_path = shutil.which("uv")
    if on_path:
        return on_path
    print(f"dev.py: installing uv {UV_VERSION} into {TOOLS.name}/", file=sys.stderr)
    venv.EnvBuilder(with_pip=True, clear=True).create(TOOLS)
    subprocess.run([str(TOOLS / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    f"uv=={UV_VERSION}"], check=True)
    return str(local)


def sync(uv: str) -> None:
    subprocess.run([uv, "sync", "--locked", "--python", sys.executable], cwd=ROOT, check=True)


def main(argv: list[str]) -> int:
    if sys.version_info < (3, 11):
        print("closeconv needs Python 3.11 or newer", file=sys.stderr)
        return 2
    if not argv or argv[0] not in {"demo", "test"}:
        print(__doc__, file=sys.stderr)
        return 2
    uv = find_uv()
    sync(uv)
    bin_dir = ROOT / ".venv" / "bin"
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    if argv[0] == "demo":
        cmd = [str(bin_dir / "closeconv"), "demo", *argv[1:]]
    else:
        cmd = [str(bin_dir / "python"), "-m", "pytest", *argv[1:]]
    return subprocess.run(cmd, cwd=ROOT, env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
