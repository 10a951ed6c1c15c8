#!/usr/bin/env python3
"""Bootstrap and run closeconv with nothing installed but Python 3.11+.

    python3 dev.py demo    # install from uv.lock, then: sample data → pipeline → summary → dashboard
    python3 dev.py test    # install from uv.lock (with test tools) and Debian's chromium when missing
                           # (root + apt-get), then run the whole test suite

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
    # uv writes .pyc files for the installed packages ([tool.uv] compile-bytecode); the project
    # is installed editable, so its own packages are compiled here. Both matter where
    # PYTHONDONTWRITEBYTECODE=1: Python then reads .pyc files but never writes them, and a
    # module without one is compiled from source on every start.
    import tomllib  # Python 3.11+, checked in main()

    subprocess.run([uv, "sync", "--locked", "--python", sys.executable], cwd=ROOT, check=True)
    with open(ROOT / "pyproject.toml", "rb") as f:
        packages = tomllib.load(f)["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "-m", "compileall", "-q", *packages], cwd=ROOT, check=True)


CHROMIUM = Path("/usr/bin/chromium")


def ensure_chromium() -> str | None:
    """The browser tests drive Debian's Chromium (never `playwright install`). Install it when
    missing and we can (root with apt-get); else return why not."""
    if CHROMIUM.exists():
        return None
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        return (f"{CHROMIUM} is missing and this is not root with apt-get, so it cannot be installed here. "
                "Install Debian's chromium (`sudo apt-get install -y chromium`) and run `python3 dev.py test` again.")
    print("dev.py: installing Debian's chromium for the browser tests (apt-get)", file=sys.stderr)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in ([apt, "update", "-qq"], [apt, "install", "-y", "-qq", "--no-install-recommends", "chromium"]):
        done = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if done.returncode != 0:
            return f"`{' '.join(cmd[:2])} ...` failed:\n{done.stderr[-2000:]}"
    return None if CHROMIUM.exists() else f"apt-get installed chromium but {CHROMIUM} is still missing."


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
        problem = ensure_chromium()
        if problem:
            print(f"dev.py test: {problem}", file=sys.stderr)
            return 2
        cmd = [str(bin_dir / "python"), "-m", "pytest", *argv[1:]]
    return subprocess.run(cmd, cwd=ROOT, env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
