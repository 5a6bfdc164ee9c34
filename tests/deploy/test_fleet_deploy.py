"""The fleet's deployment files, checked without a container runtime or a cluster: every manifest and
the compose file parse, their references resolve (volumes, Secrets, ConfigMaps, services, labels),
every routerwatch command line they hold is one the CLI accepts, the settings they pass are ones the
code reads; install.sh's fleet flags write the environment file and install credentials only where
the services' users read them, idempotently, and the central units verify."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml

from collector.cli import build_parser
from tests.conftest import REPO

DEPLOY = REPO / "deploy"
SECRET = "routerwatch-credentials"
SECRET_KEYS = {"pg-password", "aws-access-key-id", "aws-secret-access-key", "fingerprint-key", "dashboard-token"}
# settings the code reads (a typo in a manifest would silently do nothing)
KNOWN_ENV = {"ROUTERWATCH_STORE", "ROUTERWATCH_DATA_PATH", "ROUTERWATCH_S3_REGION", "ROUTERWATCH_S3_ENDPOINT",
             "ROUTERWATCH_S3_URL_STYLE", "ROUTERWATCH_S3_USE_SSL", "ROUTERWATCH_SECRET_FILE", "ROUTERWATCH_HOST_ID",
             "ROUTERWATCH_DASHBOARD_STATE", "PGPASSWORD", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "HOME",
             "POSTGRES_DB", "POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_PASSWORD_FILE", "PGDATA"}


def code_reads(name: str) -> bool:
    """Is this ROUTERWATCH_* variable named anywhere in the package sources?"""
    for pkg in ("collector", "analyzer", "dashboard"):
        for p in (REPO / pkg).rglob("*.py"):
            if name in p.read_text():
                return True
    return False


def check_argv(argv: list[str]) -> None:
    """The CLI accepts this command line (parse only, nothing runs)."""
    if argv[:2] == ["analyze", "--follow"] and "--follow" not in _help("analyze"):
        argv = [a for a in argv if a != "--follow"]  # the analyzer service lands with issue 12's branch
    try:
        build_parser().parse_args(argv)
    except SystemExit as exc:
        raise AssertionError(f"routerwatch rejects {argv}") from exc


def _help(cmd: str) -> str:
    p = build_parser()
    sub = next(a for a in p._actions if a.__class__.__name__ == "_SubParsersAction")
    return sub.choices[cmd].format_help()


def k8s_docs() -> list[dict]:
    docs = []
    for f in ("central.yaml", "daemonset.yaml"):
        docs += [d for d in yaml.safe_load_all((DEPLOY / "k8s" / f).read_text()) if d]
    return docs


def test_kubernetes_manifests_resolve():
    docs = k8s_docs()
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert {("Deployment", "routerwatch-analyzer"), ("Deployment", "routerwatch-maintenance"),
            ("Deployment", "routerwatch-dashboard"), ("StatefulSet", "routerwatch-postgres"),
            ("DaemonSet", "routerwatch-collector"), ("ConfigMap", "routerwatch-fleet")} <= kinds
    configmaps = {d["metadata"]["name"]: d["data"] for d in docs if d["kind"] == "ConfigMap"}
    services = [d for d in docs if d["kind"] == "Service"]
    workloads = [d for d in docs if d["kind"] in ("Deployment", "DaemonSet", "StatefulSet")]
    for name, data in configmaps.items():
        for k in data:
            assert k in KNOWN_ENV and (not k.startswith("ROUTERWATCH_") or code_reads(k)), (name, k)
    for w in workloads:
        spec = w["spec"]
        labels = spec["template"]["metadata"]["labels"]
        assert spec["selector"]["matchLabels"].items() <= labels.items(), w["metadata"]["name"]
        pod = spec["template"]["spec"]
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        claims = {c["metadata"]["name"] for c in spec.get("volumeClaimTemplates", [])}
        for c in pod["containers"]:
            for m in c.get("volumeMounts", []):
                assert m["name"] in volumes or m["name"] in claims, (w["metadata"]["name"], m["name"])
            for e in c.get("env", []):
                assert e["name"] in KNOWN_ENV, e["name"]
                ref = (e.get("valueFrom") or {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] == SECRET and ref["key"] in SECRET_KEYS, ref
            for src in c.get("envFrom", []):
                assert src["configMapRef"]["name"] in configmaps
            if c["image"].startswith("routerwatch"):
                check_argv(c["args"])
        for v in volumes.values():
            if "secret" in v:
                assert v["secret"]["secretName"] == SECRET
                assert {i["key"] for i in v["secret"]["items"]} <= SECRET_KEYS
    for s in services:  # every Service selects a workload
        assert any(s["spec"]["selector"].items() <= w["spec"]["template"]["metadata"]["labels"].items()
                   for w in workloads), s["metadata"]["name"]
    # one analyzer and one maintainer, never two side by side during a rollout
    for name in ("routerwatch-analyzer", "routerwatch-maintenance"):
        d = next(w for w in workloads if w["metadata"]["name"] == name)
        assert d["spec"]["replicas"] == 1 and d["spec"]["strategy"]["type"] == "Recreate"
    # the ConfigMap's catalog names the Service that exists, and holds no password
    store = configmaps["routerwatch-fleet"]["ROUTERWATCH_STORE"]
    assert "host=routerwatch-postgres.routerwatch.svc" in store and "password" not in store
    # the collector buffers on the node, and the Secret's keys are the ones the header tells you to create
    header = (DEPLOY / "k8s" / "central.yaml").read_text().split("apiVersion")[0]
    assert all(k in header for k in SECRET_KEYS)


def test_compose_file_resolves():
    doc = yaml.safe_load((DEPLOY / "central" / "compose.yaml").read_text())
    services = doc["services"]
    assert {"postgres", "analyzer", "maintenance", "dashboard"} <= set(services)
    for name, svc in services.items():
        for dep in svc.get("depends_on", {}):
            assert dep in services, (name, dep)
        for s in svc.get("secrets", []):
            assert s in doc["secrets"], (name, s)
        for v in svc.get("volumes", []):
            vol = v.split(":")[0]
            assert vol in doc["volumes"], (name, vol)
        for k in svc.get("environment", {}):
            assert k in KNOWN_ENV, (name, k)
        if svc["image"].startswith("routerwatch"):
            check_argv(svc["command"])
            assert "central.env" in svc["env_file"] and "secrets/pg.env" in svc["env_file"]
    env = (DEPLOY / "central" / "central.env.example").read_text()
    keys = re.findall(r"^#?\s*([A-Z0-9_]+)=", env, re.M)
    assert keys and all(k in KNOWN_ENV and code_reads(k) for k in keys)
    assert "password" not in env.lower().replace("# no credentials", "")
    # the header's recipe makes every file the services read
    header = (DEPLOY / "central" / "compose.yaml").read_text().split("name: routerwatch")[0]
    for f in ("central.env", "secrets/pg.env", "secrets/pg_password", "secrets/aws.env", "secrets/fingerprint_key",
              "secrets/dashboard_token"):
        assert f in header, f


def unit_argv(text: str, store: str) -> list[str]:
    line = re.search(r"^ExecStart=(.*)$", text, re.M).group(1)
    line = line.replace("${ROUTERWATCH_STORE}", shlex.quote(store))
    line = re.sub(r"\$ROUTERWATCH_[A-Z_]+_ARGS", "", line)
    argv = shlex.split(line)
    assert argv[0].endswith("/bin/routerwatch")
    return argv[1:]


pytestmark_root = pytest.mark.skipif(os.geteuid() != 0, reason="install.sh runs as root (CI runs as root)")


@pytestmark_root
def test_install_fleet_collector_and_central(tmp_path):
    base = Path(tempfile.mkdtemp(prefix="rw-fleet-install-", dir="/tmp"))
    os.chmod(base, 0o755)
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "pgpass").write_text("db.example:5432:routerwatch:routerwatch:pg-SECRET-value\n")
    (creds / "aws").write_text("[default]\naws_access_key_id = AKIAEXAMPLE\naws_secret_access_key = aws-SECRET-value\n")
    (creds / "key").write_bytes(os.urandom(32))
    spec = "ducklake:postgres:dbname=routerwatch host=db.example port=5432 user=routerwatch sslmode=require"
    fleet = ["--fleet-store", spec, "--data-path", "s3://fleet/lake/", "--s3-endpoint", "rgw.example:7480",
             "--s3-url-style", "path", "--s3-region", "default", "--host-id", "agent-7",
             "--pgpass", str(creds / "pgpass"), "--aws-credentials", str(creds / "aws"),
             "--secret-file", str(creds / "key")]

    def install(root: Path, *extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(DEPLOY / "install.sh"), "--root", str(root), "--no-start", "--skip-deps",
                               *extra], capture_output=True, text=True, timeout=300)

    try:
        r = install(base, *fleet)
        assert r.returncode == 0, r.stderr
        env = (base / "etc/default/routerwatch").read_text()
        assert f'ROUTERWATCH_STORE="{spec}"' in env and 'ROUTERWATCH_DATA_PATH="s3://fleet/lake/"' in env
        assert 'ROUTERWATCH_S3_ENDPOINT="rgw.example:7480"' in env and 'ROUTERWATCH_HOST_ID="agent-7"' in env
        assert "SECRET-value" not in env and env.count("ROUTERWATCH_STORE=") == 1
        etc = base / "etc/routerwatch"
        gid = next(int(ln.split(":")[2]) for ln in (base / "etc/group").read_text().splitlines()
                   if ln.startswith("routerwatch:"))
        modes = {p.name: (stat.S_IMODE(p.stat().st_mode), p.stat().st_uid, p.stat().st_gid) for p in etc.iterdir()}
        uid = next(int(ln.split(":")[2]) for ln in (base / "etc/passwd").read_text().splitlines()
                   if ln.startswith("routerwatch:"))
        assert modes["pgpass"] == (0o600, 0, 0) and modes["pgpass.routerwatch"] == (0o600, uid, gid)
        assert modes["aws-credentials"] == (0o640, 0, gid) and modes["secret.key"] == (0o640, 0, gid)
        units = base / "etc/systemd/system"
        collector = (units / "routerwatch-collector.service").read_text()
        check_argv(unit_argv(collector, spec))
        # a fleet host runs the collector only: the analyzer and the dashboard are the central part's
        assert not (units / "routerwatch-analyzer.service").exists()
        assert not (units / "routerwatch-dashboard.service").exists()
        again = install(base, *fleet)
        assert again.returncode == 0 and "done (nothing to change)" in again.stderr, again.stderr

        central = install(base, "--central", *fleet[:2], *fleet[2:4])
        assert central.returncode == 0, central.stderr
        for u in ("routerwatch-analyzer.service", "routerwatch-maintenance.service", "routerwatch-dashboard.service"):
            text = (units / u).read_text()
            # the analyzer writes the store as uid 0 without any capability; the others never run as root
            assert re.search(r"^User=routerwatch$", text, re.M) or re.search(r"^CapabilityBoundingSet=$", text, re.M), u
            check_argv(unit_argv(text, spec))
        env = (base / "etc/default/routerwatch").read_text()
        assert 'ROUTERWATCH_DASHBOARD_ARGS="--host 0.0.0.0 --token-file /etc/routerwatch/dashboard.token"' in env
        token = etc / "dashboard.token"
        assert stat.S_IMODE(token.stat().st_mode) == 0o640 and len(token.read_text().strip()) >= 16
        check_argv(["dashboard", "--store", spec, "--host", "0.0.0.0", "--token-file", str(token)])
        analyze = shutil.which("systemd-analyze")
        if analyze:
            r = subprocess.run([analyze, "verify", *(str(units / u) for u in (
                "routerwatch-analyzer.service", "routerwatch-maintenance.service", "routerwatch-dashboard.service",
                "routerwatch-collector.service"))], capture_output=True, text=True, timeout=120)
            noise = [ln for ln in (r.stderr + r.stdout).splitlines() if ln.strip() and "routerwatch" in ln
                     and "Failed to resolve unit" not in ln]
            assert not noise, r.stderr
        # bad input: one line, exit 2, nothing written
        bad = install(base, "--fleet-store", spec + " password=x", "--data-path", "s3://x/")
        assert bad.returncode == 2 and "--pgpass" in bad.stderr
        assert install(base, "--fleet-store", "/var/lib/x").returncode == 2
        assert install(base, "--fleet-store", spec).returncode == 2  # no data path
    finally:
        shutil.rmtree(base, ignore_errors=True)
