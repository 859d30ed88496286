"""The static checks of .ci/run: ruff, ruff format --check, mypy, import-linter.

    python3 .ci/lint.py                  # all four
    python3 .ci/lint.py mypy imports     # some of: ruff format mypy imports

mypy and import-linter find a package by its folder, and our folders are mapped at install
time (pyproject [tool.setuptools] package-dir: drivers/ -> cellctl.drivers, sim/ -> cellctl.sim).
The editable install maps them with an import hook that neither tool follows, so both run on a
view of the installed layout: build/lint-view/cellctl/ holds a symlink to each entry of
cellctl/ plus one per mapped folder (drivers -> drivers/, ...). The view is rebuilt on every
run (new modules show up at once) and messages are given back with the repository's paths
(drivers/x.py, not cellctl/drivers/x.py). Exit 0 when every check passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ROOT = "cellctl"
# mypy covers the daemon core and the drivers (issue 6); the simulator and the data package
# are left out of the type check, not out of the import contracts
MYPY_SKIP = ("sim", "profiles")


def package_dirs(repo: Path) -> dict[str, Path]:
    """Installed package name -> source folder, from [tool.setuptools] package-dir."""
    config = tomllib.loads((repo / "pyproject.toml").read_text())
    mapping = config["tool"]["setuptools"]["package-dir"]
    return {name: repo / folder for name, folder in mapping.items()}


@contextlib.contextmanager
def view_of(repo: Path, skip: tuple[str, ...] = ()) -> Iterator[Path]:
    """The view, held for one tool run: a concurrent run waits instead of rebuilding it under us."""
    lock_path = repo / "build" / "lint-view.lock"
    lock_path.parent.mkdir(exist_ok=True)
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield build_view(repo, skip)


def build_view(repo: Path, skip: tuple[str, ...] = ()) -> Path:
    """A folder in which `cellctl` has the installed layout; returns the folder."""
    view = repo / "build" / "lint-view"
    shutil.rmtree(view, ignore_errors=True)
    pkg = view / ROOT
    pkg.mkdir(parents=True)
    dirs = package_dirs(repo)
    for entry in dirs[ROOT].iterdir():
        if entry.name != "__pycache__":
            (pkg / entry.name).symlink_to(entry)
    for name, folder in dirs.items():
        if name == ROOT:
            continue
        parent, _, child = name.rpartition(".")
        if parent != ROOT:
            raise SystemExit(f"error: lint view: {name} is not a direct child of {ROOT}")
        if child not in skip:
            (pkg / child).symlink_to(folder)
    (view / "tests").symlink_to(repo / "tests")
    return view


def repo_paths(text: str, repo: Path) -> str:
    """cellctl/drivers/x.py -> drivers/x.py in tool output (the view's paths are not the tree's)."""
    for name, folder in package_dirs(repo).items():
        if name != ROOT:
            text = text.replace(name.replace(".", "/") + "/", folder.relative_to(repo).as_posix() + "/")
    return text


def run(cmd: list[str], cwd: Path, repo: Path, env: dict[str, str] | None = None) -> bool:
    print(f"+ {' '.join(cmd)}", flush=True)
    done = subprocess.run(cmd, cwd=cwd, env=env, text=True, capture_output=True, check=False)
    print(repo_paths(done.stdout + done.stderr, repo), end="", flush=True)
    return done.returncode == 0


def check_ruff(repo: Path) -> bool:
    return run([sys.executable, "-m", "ruff", "check", "."], repo, repo)


def check_format(repo: Path) -> bool:
    return run([sys.executable, "-m", "ruff", "format", "--check", "."], repo, repo)


def check_mypy(repo: Path) -> bool:
    config, cache = repo / "pyproject.toml", repo / ".mypy_cache"
    cmd = [sys.executable, "-m", "mypy", "--config-file", str(config), "--cache-dir", str(cache), "-p", ROOT]
    with view_of(repo, skip=MYPY_SKIP) as view:
        return run(cmd, view, repo)


def check_imports(repo: Path) -> bool:
    # the `lint-imports` console script, run by this interpreter (no reliance on PATH)
    entry = "import sys; from importlinter.cli import lint_imports_command as c; sys.exit(c())"
    cmd = [sys.executable, "-c", entry, str(repo / "pyproject.toml"), "--no-cache", "--no-logo"]
    with view_of(repo) as view:
        # the view first on the path: it shadows the editable install's hook for `cellctl`
        path = os.pathsep.join(filter(None, [str(view), os.environ.get("PYTHONPATH")]))
        return run(cmd, view, repo, env={**os.environ, "PYTHONPATH": path})


CHECKS: dict[str, Callable[[Path], bool]] = {
    "ruff": check_ruff,
    "format": check_format,
    "mypy": check_mypy,
    "imports": check_imports,
}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python3 .ci/lint.py", description="ruff, format, mypy, import-linter")
    parser.add_argument("checks", nargs="*", metavar="CHECK", help=f"some of: {' '.join(CHECKS)} (default: all)")
    parser.add_argument("--repo", type=Path, default=REPO, help="the tree to check (default: this one)")
    args = parser.parse_args(argv)
    names = args.checks or list(CHECKS)
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        parser.error(f"unknown check {' '.join(unknown)} (choose from {' '.join(CHECKS)})")
    repo = args.repo.resolve()
    if not (repo / "pyproject.toml").is_file():
        parser.error(f"{repo} has no pyproject.toml")
    failed = [n for n in names if not CHECKS[n](repo)]
    print(f"lint: {'failed: ' + ' '.join(failed) if failed else 'all passed'} ({' '.join(names)})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
