"""The tree's shape: which package may import which, every product module's tests, and benchmark
scripts that run as bench/ documents.

Data flows one way (collector -> analyzer -> dashboard), product code never imports tests or
benchmarks, tests never import benchmarks, and benchmarks take shared code from tests.support only.
Tests mirror the packages (tests/<pkg>/<sub>/test_<module>.py); a module tested elsewhere is listed
in COVERED_ELSEWHERE with the test files that exercise it.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PRODUCT = ("collector", "analyzer", "dashboard")
# package -> top-level packages of this repo it must not import
FORBIDDEN = {
    "collector": {"analyzer", "dashboard", "tests", "bench"},
    "analyzer": {"dashboard", "tests", "bench"},
    "dashboard": {"tests", "bench"},
    "tests": {"bench"},
    "bench": set(),
}
# Product modules without a test file of their own, and where they are tested. Reviewed entry by
# entry (the module is imported there, or run through the `routerwatch` command, a dashboard page or
# a wrapped process that the test starts); checked against a coverage run of the named files
# (2026-12-05). Add a module here only with the test that covers it; delete its entry when it gets
# its own test file.
_C, _A, _D = "tests/collector", "tests/analyzer", "tests/dashboard"
COVERED_ELSEWHERE: dict[str, tuple[str, ...]] = {
    # capture: the readers and the vectorised walk on crafted and corpus captures
    "collector/capture/dissect.py": (f"{_C}/capture/test_readers.py", f"{_C}/test_ingest.py"),
    "collector/capture/fallback.py": (f"{_C}/capture/test_corpus.py",),  # link types only tshark walks
    "collector/capture/headers.py": (f"{_C}/capture/test_readers.py",),
    "collector/capture/ja4.py": (f"{_C}/capture/test_readers.py",),
    "collector/capture/pcap.py": (f"{_C}/capture/test_readers.py",),
    "collector/capture/pcapng.py": (f"{_C}/capture/test_readers.py", f"{_C}/capture/test_corpus.py"),
    "collector/capture/source.py": (f"{_C}/test_ingest.py",),  # stdin, FIFOs, devices through `routerwatch ingest`
    "collector/capture/tshark.py": (f"{_C}/test_ingest.py", f"{_C}/capture/test_tlspeek.py"),
    # the command line and its configuration
    "collector/cli.py": (f"{_C}/test_ingest.py", f"{_C}/test_wrap.py"),
    # eBPF (as root, real probes) and Go binaries
    "collector/ebpf/events.py": (f"{_C}/ebpf/test_probe_records.py",),
    "collector/ebpf/go_tls.py": (f"{_C}/ebpf/test_go_binaries.py", f"{_C}/live/test_go_tls.py"),
    "collector/ebpf/gopclntab.py": (f"{_C}/ebpf/test_go_binaries.py",),
    "collector/ebpf/loader.py": (f"{_C}/ebpf/test_probe_records.py",),
    "collector/inventory/agents.py": (f"{_C}/inventory/test_inventory.py",),
    "collector/inventory/files.py": (f"{_C}/inventory/test_inventory.py",),
    "collector/inventory/scan.py": (f"{_C}/inventory/test_inventory.py",),
    # the live collector, run as `routerwatch collect`
    "collector/live/capture.py": (f"{_C}/live/test_capture_ring.py", f"{_C}/live/test_capture_drops.py"),
    "collector/live/decode.py": (f"{_C}/live/test_collect.py", f"{_C}/live/test_plaintext.py"),
    "collector/live/decrypt.py": (f"{_C}/live/test_keylog_live.py", f"{_C}/live/test_decrypt_cut.py"),
    "collector/live/ebpf_rows.py": (f"{_C}/live/test_conn_state.py", f"{_C}/live/test_dns_send.py"),
    "collector/live/keylog_watch.py": (f"{_C}/live/test_keylog_live.py",),
    "collector/live/procnet.py": (f"{_C}/live/test_degraded.py",),
    "collector/live/stats.py": (f"{_C}/live/test_collect.py",),
    # LLM decoding: the per-API decoders through the shared pipeline
    "collector/llm/anthropic.py": (f"{_C}/llm/test_llm_decode.py", f"{_C}/protocols/test_fuzz_parsers.py"),
    "collector/llm/gemini.py": (f"{_C}/llm/test_llm_decode.py", f"{_C}/protocols/test_fuzz_parsers.py"),
    "collector/llm/openai.py": (f"{_C}/llm/test_llm_decode.py", f"{_C}/protocols/test_fuzz_parsers.py"),
    "collector/llm/pipeline.py": (f"{_C}/llm/test_llm_decode.py",),
    "collector/llm/result.py": (f"{_C}/llm/test_llm_decode.py", f"{_C}/protocols/test_fuzz_parsers.py"),
    "collector/llm/router_headers.py": (f"{_C}/llm/test_llm_decode.py",),
    "collector/protocols/connection.py": (f"{_C}/protocols/test_http1.py", f"{_C}/protocols/test_http2.py"),
    "collector/protocols/messages.py": (f"{_C}/protocols/test_http1.py", f"{_C}/protocols/test_sse.py"),
    # proxy mode
    "collector/proxy/decode.py": (f"{_C}/proxy/test_sink.py",),
    "collector/proxy/server.py": (f"{_C}/proxy/test_proxy.py", f"{_C}/proxy/test_proxy_h2.py"),
    # the policy gate: the shared core and the proxy's rewriting, through their callers' tests
    "collector/policy/judge.py": (f"{_C}/policy/test_screen.py", f"{_C}/policy/test_hook.py", f"{_C}/proxy/gate/test_body.py"),
    "collector/policy/model.py": (f"{_C}/policy/test_policy.py", f"{_C}/policy/test_screen.py"),
    "collector/policy/record.py": (f"{_C}/policy/test_hook.py", f"{_C}/proxy/test_gate.py"),
    "collector/proxy/gate/apis.py": (f"{_C}/proxy/gate/test_body.py", f"{_C}/proxy/test_gate.py"),
    "collector/proxy/gate/conn.py": (f"{_C}/proxy/gate/test_http1.py", f"{_C}/proxy/gate/test_http2.py"),
    "collector/proxy/gate/relay.py": (f"{_C}/proxy/test_gate.py", "tests/e2e/test_agents_gate.py"),
    # the store
    "collector/store/anchor.py": (f"{_C}/store/test_concurrency.py",),
    "collector/store/connection.py": (f"{_C}/store/test_store.py",),
    "collector/store/errors.py": (f"{_C}/store/test_store.py", f"{_C}/store/test_concurrency.py"),
    "collector/store/extensions.py": (f"{_C}/store/test_store.py",),
    "collector/store/locking.py": (f"{_C}/store/test_concurrency.py",),
    "collector/store/maintainer.py": (f"{_C}/store/test_fleet_store.py",),  # the maintenance lease
    "collector/store/remote.py": (f"{_C}/store/test_fleet_store.py", f"{_C}/store/test_fleet_backends.py"),
    "collector/store/migrate.py": (f"{_C}/store/test_store.py",),
    "collector/store/writer.py": (f"{_C}/store/test_store.py", f"{_C}/store/test_concurrency.py"),
    # TLS decryption
    "collector/tls/keylog.py": (f"{_C}/tls/test_tls_corpus.py", f"{_C}/tls/test_native_decrypt.py"),
    "collector/tls/pipeline.py": (f"{_C}/tls/test_tls_corpus.py", f"{_C}/tls/test_split.py"),
    "collector/tls/records.py": (f"{_C}/tls/test_native_decrypt.py",),
    "collector/tls/tshark_decrypt.py": (f"{_C}/tls/test_native_decrypt.py", f"{_C}/tls/test_streams.py"),
    "collector/tls/worker.py": (f"{_C}/tls/test_tls_corpus.py",),  # the decode worker of a big capture
    # tool-call analysis, reached through collector.toolcalls.analyze_tool_call
    "collector/toolcalls/code.py": (f"{_C}/toolcalls/test_arguments.py",),
    "collector/toolcalls/hosts.py": (f"{_C}/toolcalls/test_arguments.py", f"{_C}/toolcalls/test_shell.py"),
    "collector/toolcalls/installs.py": (f"{_C}/toolcalls/test_shell.py",),
    "collector/toolcalls/model.py": (f"{_C}/toolcalls/test_arguments.py",),
    "collector/toolcalls/packages.py": (f"{_C}/toolcalls/test_shell.py",),
    "collector/toolcalls/paths.py": (f"{_C}/toolcalls/test_arguments.py",),
    "collector/toolcalls/tokens.py": (f"{_C}/toolcalls/test_arguments.py",),
    "collector/wrap_hooks/sitecustomize.py": (f"{_C}/test_wrap.py",),  # runs inside the wrapped Python
    # analyzer: `routerwatch analyze/findings/report/canary/sql` on real stores
    "analyzer/alerts.py": (f"{_A}/test_analyze_cli.py",),
    "analyzer/canary.py": (f"{_A}/test_analyze_cli.py",),
    "analyzer/cli.py": (f"{_A}/test_analyze_cli.py", f"{_A}/test_sql_cli.py"),
    "analyzer/coverage.py": (f"{_A}/test_detection_gaps.py",),
    "analyzer/demo/agent.py": (f"{_A}/demo/test_demo_zoo.py", f"{_A}/demo/test_demo_capture.py"),
    "analyzer/demo/capture.py": (f"{_A}/demo/test_demo_capture.py",),
    "analyzer/demo/formats.py": (f"{_A}/demo/test_demo_zoo.py",),
    "analyzer/demo/pki.py": (f"{_A}/demo/test_demo_pki.py",),
    "analyzer/demo/run.py": (f"{_A}/test_scenarios.py",),
    "analyzer/demo/safe_exec.py": (f"{_A}/demo/test_demo_safe_exec.py",),
    "analyzer/demo/zoo.py": (f"{_A}/demo/test_demo_zoo.py",),
    "analyzer/enrich/exchanges.py": (f"{_A}/rules/test_rule_fixtures.py", f"{_C}/catalog/test_loader.py"),
    "analyzer/enrich/pipeline.py": (f"{_A}/rules/test_rule_fixtures.py", f"{_A}/test_analyze_cli.py"),
    "analyzer/report.py": (f"{_A}/test_analyze_cli.py",),
    "analyzer/rules/loader.py": (f"{_A}/rules/test_rule_fixtures.py",),
    "analyzer/rules/testing.py": (f"{_A}/rules/test_rule_fixtures.py",),
    "analyzer/sql.py": (f"{_A}/test_sql_cli.py",),
    "analyzer/sql_shell.py": (f"{_A}/test_sql_cli.py",),
    # dashboard: every page in Streamlit's AppTest, and in a real browser
    "dashboard/annotations.py": (f"{_D}/test_pages.py",),
    "dashboard/app.py": (f"{_D}/test_pages.py", f"{_D}/test_browser.py"),
    "dashboard/guarded_app.py": (f"{_D}/test_host_guard.py", f"{_D}/test_browser.py"),  # what `dashboard` serves
    "dashboard/capture.py": (f"{_D}/test_queries.py",),
    "dashboard/rollup.py": (f"{_D}/test_queries.py",),
    "dashboard/ui.py": (f"{_D}/test_pages.py",),
    "dashboard/views/destinations.py": (f"{_D}/test_pages.py",),
    "dashboard/views/hosts.py": (f"{_D}/test_hosts.py",),
    "dashboard/views/exchanges.py": (f"{_D}/test_pages.py",),
    "dashboard/views/findings.py": (f"{_D}/test_pages.py",),
    "dashboard/views/flows.py": (f"{_D}/test_pages.py",),
    "dashboard/views/overview.py": (f"{_D}/test_pages.py", f"{_D}/test_browser.py"),
    "dashboard/views/routers.py": (f"{_D}/test_pages.py",),
    "dashboard/views/sql.py": (f"{_D}/test_pages.py",),
}
BENCH_SCRIPTS = sorted(p for p in (REPO / "bench").glob("*.py") if p.name != "__init__.py")


def _imports(path: Path) -> set[str]:
    """Every module an import statement in `path` names (function-level imports included)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module)
    return out


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_import_directions(package: str) -> None:
    bad = []
    for path in sorted((REPO / package).rglob("*.py")):
        for mod in _imports(path):
            top = mod.split(".")[0]
            if top in FORBIDDEN[package]:
                bad.append(f"{path.relative_to(REPO)} imports {mod}")
            elif package == "bench" and top == "tests" and not mod.startswith("tests.support"):
                bad.append(f"{path.relative_to(REPO)} imports {mod} (bench may use tests.support only)")
    assert bad == []


def test_the_checks_see_imports() -> None:
    """The walk above finds module-level and function-level imports alike (a guard against a no-op)."""
    assert {"tests.support.sample_data", "dashboard"} <= _imports(REPO / "bench" / "dashboard.py")
    assert "collector.llm.result" in _imports(REPO / "collector" / "llm" / "openai.py")
    assert "collector.proxy.ca" in _imports(REPO / "analyzer" / "demo" / "pki.py")


@pytest.mark.parametrize("script", BENCH_SCRIPTS, ids=lambda p: p.name)
def test_bench_script_runs_as_documented(script: Path, tmp_path: Path) -> None:
    """`python bench/X.py` from any directory (here: an empty one), as bench/__init__.py says."""
    doc = ast.get_docstring(ast.parse(script.read_text())) or ""
    assert not re.search(r"-m bench\.", doc), f"{script.name} documents `-m bench.…`; bench/ says `python bench/X.py`"
    p = subprocess.run([sys.executable, str(script), "--help"], cwd=tmp_path, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.startswith("usage:")


def _modules() -> list[str]:
    return sorted(str(p.relative_to(REPO)) for pkg in PRODUCT for p in (REPO / pkg).rglob("*.py")
                  if p.name != "__init__.py")


def _mirror(module: str) -> Path:
    m = Path(module)
    return REPO / "tests" / m.parent / f"test_{m.stem}.py"


def test_every_product_module_has_its_tests() -> None:
    """tests/<pkg>/<sub>/test_<module>.py exists, or COVERED_ELSEWHERE names the tests."""
    untested = [m for m in _modules() if not _mirror(m).exists() and m not in COVERED_ELSEWHERE]
    assert untested == [], "give these a test file, or list them in COVERED_ELSEWHERE with the tests that cover them"


def test_the_covered_elsewhere_map_is_current() -> None:
    """No entry for a module that is gone or has its own test file now; every named test file exists."""
    modules = set(_modules())
    stale = [m for m in COVERED_ELSEWHERE if m not in modules or _mirror(m).exists()]
    assert stale == [], "delete these entries"
    missing = [(m, t) for m, tests in COVERED_ELSEWHERE.items() for t in tests if not (REPO / t).is_file()]
    assert missing == [] and all(COVERED_ELSEWHERE.values())
