"""The gate's one question: given a tool call, who it is for and which router sent it, what does the
policy do? Shared by the proxy (collector.proxy.gate), the agent hook (collector.policy.hook) and the
dry run over stored exchanges (collector.policy.dryrun), so all three decide identically."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from collector.policy.model import ToolCall, Verdict
from collector.policy.policy import Policy
from collector.policy.screen import TYPOSQUAT_MAX_DISTANCE, WRITTEN_RUN_WINDOW_S, WrittenFiles, rule_hits

HitsFn = Callable[[ToolCall], "list[tuple[str, ...]]"]  # (rule, reason[, detail])


@dataclass(frozen=True)
class Context:
    """Who the call is for and where it came from."""

    router: str  # how the router is named to people: catalog name, else host[:port]
    agent: str | None = None  # routerwatch inventory's agent name ('claude-code', 'codex', ...)
    router_names: tuple[str, ...] = ()  # every name a policy override may use for it (label, host, host:port)
    session: str | None = None  # the agent's session (hook) or process (proxy): scope of the written-file memory

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((self.router, *self.router_names)))


class Judge:
    """`judge(call, ctx) -> Verdict`. `hits` finds the rules a call trips (default: the shared
    screening, with the catalog's package sources and allowlist as the trusted sources and
    destinations, and a memory of files earlier calls of the same agent wrote payloads into)."""

    def __init__(self, policy: Policy, *, known_source: Callable[..., bool] | None = None,
                 known_host: Callable[[str], bool] | None = None, max_distance: int = TYPOSQUAT_MAX_DISTANCE,
                 hits: HitsFn | None = None, written: WrittenFiles | None = None):
        self.policy = policy
        self.written = written if written is not None else WrittenFiles()
        self._hits_fn = hits
        self._screen = (known_source, known_host, max_distance)

    def hits(self, call: ToolCall, ctx: Context) -> list[tuple[str, ...]]:
        if self._hits_fn is not None:
            return self._hits_fn(call)
        known_source, known_host, max_distance = self._screen
        return rule_hits(call, known_source, known_host, max_distance, written=self.written,
                         scope=f"{ctx.agent or ''}|{ctx.session or ''}")

    def __call__(self, call: ToolCall, ctx: Context) -> Verdict:
        return self.policy.decide(self.hits(call, ctx), ctx.agent, ctx.names)

    def unjudged(self, rule: str, reason: str, ctx: Context) -> Verdict:
        return self.policy.unjudged_verdict(rule, reason, ctx.agent, ctx.names)


def judge_for(policy: Policy, catalog=None) -> Judge:  # noqa: ANN001 - collector.catalog.Catalog
    """The judge every gate uses: the policy, with the catalog's allowlist as the trusted package
    sources and its typosquat distance setting (builtin defaults without a catalog)."""
    if catalog is None:
        return Judge(policy)
    # the tests the analyzer's enrichment passes to is_execution: package sources, allowlisted hosts
    return Judge(policy, known_source=catalog.is_package_source, known_host=lambda host: catalog.is_allowlisted(host),
                 max_distance=int(catalog.setting("typosquat_max_distance", TYPOSQUAT_MAX_DISTANCE)),
                 written=WrittenFiles(float(catalog.setting("written_run_window_s", WRITTEN_RUN_WINDOW_S))))


def gate_inputs(store: str | None, policy_file: str | None = None, gate_fail_open: bool = False):  # noqa: ANN201
    """(policy, catalog) for a gate working with `store`: the policy file (flag, $ROUTERWATCH_POLICY,
    `policy.yaml` beside the store, builtin) and the catalog beside the store. Raises PolicyError or
    CatalogError with a one-line message."""
    from collector.catalog import load_catalog
    from collector.policy.policy import load_policy
    from collector.store.connection import StoreLocation

    root = StoreLocation.parse(store).root
    pol = load_policy(policy_file, store_root=root)
    return (pol.allowing_unjudged() if gate_fail_open else pol), load_catalog(root)


HEAD = "routerwatch blocked a tool call"
TAIL = " It was not passed on. Do not retry it; tell the user."


def block_message(verdict: Verdict, call: ToolCall | None, router: str, limit: int | None = None) -> str:
    """What the agent (and, through it, its user) reads instead of a blocked call. `limit` (characters)
    shortens the reason first, then the rest; the head always fits (the HTTP/2 rewrite may need it)."""
    what = f" ({call.name})" if call is not None and call.name else ""
    rule = f"{verdict.rule}: " if verdict.rule else ""
    text = f"{HEAD}{what} from router {router}: {rule}{verdict.reason}.{TAIL}"
    if limit is None or len(text) <= limit:
        return text
    fixed = f"{HEAD}{what} from router {router}: {rule}"
    room = limit - len(fixed) - len(TAIL) - 2
    tag = f" ({verdict.rule})" if verdict.rule else ""
    shorter = [f"{fixed}{verdict.reason[:room]}….{TAIL}" if room >= 12 else "",  # the most useful first
               f"{HEAD}{what} from router {router}{tag}.{TAIL}", f"{HEAD} from router {router}{tag}",
               f"{HEAD} from {router}{tag}", f"{HEAD}{tag}", f"{HEAD} from {router}", HEAD]
    return next((s for s in shorter if s and len(s) <= limit), HEAD[: max(limit, 0)])
