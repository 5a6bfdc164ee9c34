"""The catalog: builtin content, user overrides beside the store, classification."""

from __future__ import annotations

import pytest

from analyzer.enrich.exchanges import Classifier, model_family, parse_headers, stream_anomalies
from collector.catalog import load_catalog
from collector.catalog.loader import CatalogError


def test_builtin_classifies_providers_routers_and_software():
    cat = load_catalog(None)
    c = Classifier(cat)
    assert c.classify("api.openai.com", None, 443).cls == "provider"
    assert c.classify("myres.openai.azure.com", None, 443).provider == "openai"
    assert c.classify("bedrock-runtime.us-east-1.amazonaws.com", None, 443).name == "aws-bedrock"
    assert c.classify("openrouter.ai", None, 443).cls == "router"
    assert c.classify("cheap-gpt.example", "203.0.113.1", 443).cls == "other"
    assert c.software({"x-oneapi-request-id": "1"}, "/v1/chat/completions", 443) == ["one-api"]
    assert c.software({"x-litellm-call-id": "1"}, None, 4000) == ["litellm"]
    assert c.software({}, "/setup/status", 8080) == ["sub2api"]
    assert c.brand("api-openai-fast.example") == "openai"
    assert c.brand("api.openai.com") is None
    assert c.brand("claude-relay.example") == "anthropic"


def test_user_catalog_beside_the_store_overrides(tmp_path):
    (tmp_path / "catalog.yaml").write_text(
        "declared_routers:\n  - {name: team-litellm, hosts: ['127.0.0.1:4000', llm.corp.example]}\n"
        "providers:\n  - {name: xai, disabled: true}\n"
        "allowlist:\n  allow_loopback: false\n  hosts: ['127.0.0.1:8000', docs.corp.example]\n"
        "settings: {egress_window_s: 30}\n"
    )
    cat = load_catalog(tmp_path)
    c = Classifier(cat)
    d = c.classify("127.0.0.1", "127.0.0.1", 4000)
    assert (d.cls, d.name, d.kind) == ("router", "team-litellm", "declared")
    assert c.classify("127.0.0.1", "127.0.0.1", 4001).cls == "other"
    assert c.classify("api.x.ai", None, 443).cls == "other"  # disabled
    assert cat.is_allowlisted("127.0.0.1", 8000) and not cat.is_allowlisted("127.0.0.1", 9000)
    assert cat.is_allowlisted("docs.corp.example") and cat.is_allowlisted("pypi.org")
    assert cat.setting("egress_window_s") == 30
    assert str(tmp_path / "catalog.yaml") in cat.sources
    user_rows = [r for r in cat.host_rows() if r["source"] == "user"]
    assert {r["name"] for r in user_rows} == {"team-litellm"}


def test_bad_user_catalog_is_a_clear_error(tmp_path):
    (tmp_path / "catalog.yaml").write_text("providers: [ {hosts: [a]} ]\n")
    with pytest.raises(CatalogError, match="name"):
        load_catalog(tmp_path)
    (tmp_path / "catalog.yaml").write_text("providers: [\n")
    with pytest.raises(CatalogError, match="YAML"):
        load_catalog(tmp_path)


@pytest.mark.parametrize(
    "model, family",
    [
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("openai/gpt-4o-mini", "gpt-4o-mini"),
        ("claude-3-5-sonnet-latest", "claude-3-5-sonnet"),
        ("anthropic.claude-3-5-sonnet-20240620-v1:0", "claude-3-5-sonnet"),
        ("claude-sonnet-4-5@20250929", "claude-sonnet-4-5"),
        ("gpt-4-1106-preview", "gpt-4"),
        (None, None),
    ],
)
def test_model_family(model, family):
    assert model_family(model) == family


def test_headers_and_stream_checks():
    assert parse_headers('{"X-Litellm-Id": "1"}') == {"x-litellm-id": "1"}
    assert parse_headers([["Server", "nginx"]]) == {"server": "nginx"}
    assert parse_headers("garbage") == {}
    kinds = {k for k, _ in stream_anomalies("anthropic.messages", {"types": {"message_start": 1, "bogus": 1},
                                                                    "output_tokens_seq": [5, 3], "after_done": 2,
                                                                    "anomalies": ["error_event", "tool_arguments_differ_from_deltas"]})}
    assert kinds == {"unknown_event", "tokens_decrease", "after_done", "tool_arguments_differ_from_deltas"}
    events = [{"type": "message_start", "model": "claude-sonnet-4-5", "output_tokens": 1},
              {"type": "message_delta", "output_tokens": 30}]
    assert stream_anomalies("anthropic.messages", events) == []


def test_router_names_for_the_gate() -> None:
    """The gate names routers as the analyzer does: a catalog entry's name, else host[:port]."""
    cat = load_catalog(extra={"declared_routers": [{"name": "team-router", "hosts": ["llm.corp.example"]}]})
    assert cat.router_names("llm.corp.example", 443) == (
        "team-router", ("team-router", "llm.corp.example", "llm.corp.example:443"))
    label, names = cat.router_names("127.0.0.1", 8443)
    assert label == "127.0.0.1:8443" and "127.0.0.1" in names
    assert cat.match_host("api.anthropic.com", None, 443)["kind"] == "provider"
    assert cat.match_host("unknown.example", None, 443) is None
