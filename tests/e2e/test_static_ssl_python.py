"""A Python with `_ssl` built in and OpenSSL linked statically (the python-build-standalone layout that
`uv python install` ships; built by deploy/static_ssl_python.sh): the uprobe target discovery finds
SSL_* in the python executable itself, and the openai SDK's plaintext from that Python, which loads
no libssl.so and writes no key log, is decoded by the live collector's SSL_* uprobes."""

from __future__ import annotations

import json
import os
import subprocess
import sysconfig
from pathlib import Path

import pytest

from collector.ebpf.targets import ssl_binaries
from collector.store import Store
from tests.collector.live.conftest import live, needs_ebpf  # noqa: F401
from tests.conftest import REPO
from tests.support.fixtures import pki_dir, zoo  # noqa: F401

PYTHON = Path(os.environ.get("ROUTERWATCH_STATIC_SSL_PYTHON", REPO / ".cache" / "static-ssl-python" / "bin" / "python3.11"))

AGENT = """
import json, os, sys, _ssl
import openai
maps = open('/proc/self/maps').read()
client = openai.OpenAI(base_url=sys.argv[1] + '/v1', api_key='sk-proj-staticssl' + 'K' * 40, max_retries=0)
r = client.chat.completions.create(model='gpt-4o', messages=[{'role': 'user', 'content': 'run: ls /tmp'}],
    tools=[{'type': 'function', 'function': {'name': 'run_shell', 'parameters': {'type': 'object',
            'properties': {'command': {'type': 'string'}}}}}])
print(json.dumps({'pid': os.getpid(), 'builtin_ssl': '_ssl' in sys.builtin_module_names,
                  'libssl_mapped': 'libssl' in maps, 'args': r.choices[0].message.tool_calls[0].function.arguments}))
"""


def _python() -> str:
    if not PYTHON.is_file():
        pytest.skip(f"{PYTHON} is missing: `bash deploy/deps.sh --test` builds it (deploy/static_ssl_python.sh)")
    return str(PYTHON)


def test_discovery_finds_ssl_in_the_python_executable() -> None:
    py = _python()
    (t,) = ssl_binaries([py])
    assert t.kind == "python" and {"SSL_read", "SSL_write", "SSL_read_ex", "SSL_write_ex"} <= set(t.symbols)
    out = subprocess.run(["ldd", py], capture_output=True, text=True).stdout
    assert "libssl" not in out and "libpython" not in out
    # the default discovery (no paths given) finds it behind a running process
    proc = subprocess.Popen([py, "-c", "import ssl, time; time.sleep(60)"])
    try:
        found = {x.path: x for x in ssl_binaries()}
    finally:
        proc.kill()
        proc.wait()
    assert os.path.realpath(py) in found and found[os.path.realpath(py)].kind == "python"


@pytest.mark.ebpf
@needs_ebpf
def test_openai_sdk_on_static_ssl_python_decoded_from_uprobes(live, zoo) -> None:  # noqa: ANN001, F811
    py = _python()
    router = zoo("inject", alpn=("http/1.1",))
    c = live("--no-capture", "--interval", "1", "--max-delay", "1", "--ssl-lib", py)
    # the SDK comes from this checkout's virtualenv; the standard library is the static Python's own
    env = {"PATH": "/usr/bin:/bin", "SSL_CERT_FILE": str(router.ca_path),
           "PYTHONPATH": sysconfig.get_paths()["purelib"]}
    p = subprocess.run([py, "-c", AGENT, router.url], capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout)
    assert out["builtin_ssl"] and not out["libssl_mapped"]  # no libssl.so: only the executable's SSL_*
    assert c.stop() == 0, c.output()
    with Store.open(str(c.store), read_only=True) as s:
        rows = s.sql("SELECT exchange_id, api, model_requested FROM llm_exchanges WHERE source = 'uprobe' AND pid = ?",
                     [out["pid"]]).fetchall()
        assert rows, c.output()
        calls = s.sql("SELECT arguments FROM tool_calls WHERE exchange_id = ? AND direction = 'response'",
                      [rows[0][0]]).fetchall()
        leaked = s.sql("SELECT count(*) FROM http WHERE CAST(request_headers AS VARCHAR) LIKE '%KKKKKKKK%'").fetchone()[0]
    assert rows[0][1] == "openai.chat" and rows[0][2] == "gpt-4o"
    assert json.loads(calls[0][0])["command"] == json.loads(out["args"])["command"]
    assert leaked == 0  # the key was redacted like any other plaintext source's
