"""The Go HTTPS test agent (tests/fixtures/goclient, stdlib only), compiled at test time.

`build_goclient(dest, stripped=...)` runs `go build` offline (GOPROXY=off, GOFLAGS=-mod=mod, GOCACHE
under `dest`, CGO_ENABLED=0 so no C compiler is needed and the binary is static like release builds
of Go agents); `-ldflags='-s -w'` makes the stripped variant (no .symtab, no DWARF). `run_goclient`
runs one invocation against a loopback router, trusting its CA through SSL_CERT_FILE.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "fixtures" / "goclient"
GO = shutil.which("go")
needs_go = pytest.mark.skipif(GO is None, reason="go is not installed (deploy/deps.sh --test installs golang-go)")
API_KEY = "sk-go-uprobe-0000000000000000000000000000"


def go_env(work: Path) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(work), "GOCACHE": str(work / "gocache"),
            "GOPATH": str(work / "gopath"), "GOPROXY": "off", "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local",
            "CGO_ENABLED": "0", "GO111MODULE": "on"}


def build_goclient(dest: Path, *, stripped: bool = False) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    out = dest / ("goclient-stripped" if stripped else "goclient")
    cmd = [GO or "go", "build", "-trimpath", "-o", str(out)]
    if stripped:
        cmd.append("-ldflags=-s -w")
    r = subprocess.run([*cmd, "."], cwd=SOURCE, env=go_env(dest), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return out


@pytest.fixture(scope="session")
def goclients(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """{'symtab': binary with its symbol table, 'stripped': the same built with -s -w}."""
    if GO is None:
        pytest.skip("go is not installed (deploy/deps.sh --test installs golang-go)")
    d = tmp_path_factory.mktemp("goclient")
    return {"symtab": build_goclient(d), "stripped": build_goclient(d, stripped=True)}


def goclient_cmd(binary: Path, url: str, *, proto: str = "h2", stream: bool = False, calls: int = 1,
                 wait: Path | None = None) -> list[str]:
    cmd = [str(binary), "-url", url, "-proto", proto, "-calls", str(calls)]
    if stream:
        cmd.append("-stream")
    if wait is not None:
        cmd += ["-wait", str(wait)]
    return cmd


def goclient_env(ca: str | os.PathLike) -> dict[str, str]:
    return {"SSL_CERT_FILE": str(ca), "GOCLIENT_API_KEY": API_KEY, "PATH": "/usr/bin:/bin"}


def parse_lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def run_goclient(binary: Path, url: str, ca: str | os.PathLike, **kw: object) -> list[dict]:
    """One run; returns its JSON lines (pid, proto, model, arguments per call)."""
    r = subprocess.run(goclient_cmd(binary, url, **kw), env=goclient_env(ca), capture_output=True, text=True,  # type: ignore[arg-type]
                       timeout=120)
    assert r.returncode == 0, r.stderr
    return parse_lines(r.stdout)
