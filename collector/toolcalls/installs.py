"""Package installs in a command: which packages (for the typosquat check), and whether the code
comes from a URL or from an index other than the registry's (both run foreign code at install time).

pip / uv / poetry / pdm / rye / pipx, npm / yarn / pnpm / bun (and npx/bunx/dlx), cargo, go; the
index settings (`--index-url`, `--extra-index-url`, `--find-links`, `--trusted-host`, `--registry`,
`--index`, `PIP_INDEX_URL=`, `npm config set registry`, `GOPROXY=`) included.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from collector.toolcalls.hosts import parse_url
from collector.toolcalls.model import CUSTOM_INDEX, INSTALL_URL, Analysis, HostRef, Indicator, Install

PIP_VALUE_OPTS = {
    "-r", "--requirement", "-c", "--constraint", "-e", "--editable", "-t", "--target", "--prefix", "--root",
    "--platform", "--python-version", "--implementation", "--abi", "--proxy", "--cert", "--client-cert",
    "--cache-dir", "--src", "--log", "--timeout", "--retries", "--exists-action", "--progress-bar",
    "--upgrade-strategy", "--python", "-p", "--group", "--only-binary", "--no-binary", "--extra", "--optional",
    "--dev-group", "--source", "-G", "-E", "--extras", "--constraints", "--overrides", "--resolution",
    "--prerelease", "--index-strategy", "--keyring-provider", "--config-settings", "-C", "--report",
}
PIP_INDEX_OPTS = {"-i", "--index-url", "--extra-index-url", "-f", "--find-links", "--default-index", "--index"}
NPM_VALUE_OPTS = {"--prefix", "-w", "--workspace", "--tag", "--cache", "--userconfig", "-C", "--dir", "--filter",
                  "--save-prefix", "--omit", "--include", "--loglevel"}
CARGO_VALUE_OPTS = {
    "--version", "--vers", "--path", "--branch", "--tag", "--rev", "--registry", "--features", "-F", "--root",
    "--target", "--profile", "-j", "--jobs", "--rename", "--package", "-p", "--bin", "--example", "--config",
}
INDEX_VARIABLES = re.compile(
    r"^(?:PIP_INDEX_URL|PIP_EXTRA_INDEX_URL|PIP_FIND_LINKS|UV_INDEX_URL|UV_EXTRA_INDEX_URL|UV_DEFAULT_INDEX|UV_INDEX|"
    r"POETRY_REPOSITORIES_\w+_URL|NPM_CONFIG_REGISTRY|npm_config_registry|YARN_REGISTRY|YARN_NPM_REGISTRY_SERVER|"
    r"BUN_CONFIG_REGISTRY|GOPROXY|CARGO_REGISTRIES_\w+_INDEX|PIP_TRUSTED_HOST)=(.*)$",
)
_GIT_SHORTHAND = {"github": "github.com", "gitlab": "gitlab.com", "bitbucket": "bitbucket.org", "gist": "gist.github.com"}


def installs(head: str, args: list[str], assignments: list[str], text: str) -> Analysis:
    """One simple command -> package installs, install-from-URL and custom-index indicators, hosts."""
    out = Analysis()
    for a in assignments:
        _index_variable(a, text, out)
    if head == "export":
        for a in args:
            _index_variable(a, text, out)
        return out
    if head.startswith("python") and args[:2] == ["-m", "pip"]:
        head, args = "pip", args[2:]
    if head == "uv" and args[:1] == ["pip"]:
        head, args = "pip", args[1:]
    if head in ("uv", "poetry", "pdm", "rye", "hatch") and args[:1] == ["add"]:
        _pip(args[1:], text, out)
    elif head == "uvx" or head == "uv" and args[:2] == ["tool", "install"] or head == "uv" and args[:2] == ["tool", "run"]:
        _pip([a for a in (args[2:] if head == "uv" else args)][:1], text, out)
    elif head == "pipx" and args[:1] in (["install"], ["run"], ["inject"]):
        _pip(args[1:2] if args[:1] == ["run"] else args[1:], text, out)
    elif re.match(r"^pip(?:\d(?:\.\d+)?)?$", head) and args[:1] in (["install"], ["download"]):
        _pip(args[1:], text, out)
    elif re.match(r"^pip(?:\d(?:\.\d+)?)?$", head) and args[:2] == ["config", "set"] and len(args) >= 4:
        if re.search(r"index-url|find-links|trusted-host", args[2]):
            _index(args[3], text, out)
    elif head in ("npm", "pnpm", "yarn", "bun", "cnpm") and (args[:2] == ["config", "set"] or args[:1] == ["set"]):
        rest = args[2:] if args[0] == "config" else args[1:]
        if rest:
            key, eq, val = rest[0].partition("=")
            if key.endswith("registry"):
                _index(val if eq else (rest[1] if len(rest) > 1 else ""), text, out)
    elif head in ("npm", "pnpm", "yarn", "bun", "cnpm") and args[:1] and args[0] in (
            "install", "i", "add", "isntall", "in", "ins", "inst", "insta", "instal", "isnt", "isnta", "isntal"):
        _npm(args[1:], text, out)
    elif head in ("npx", "bunx") and args:
        _npm([a for a in args if not a.startswith("-")][:1], text, out)
    elif head in ("pnpm", "yarn") and args[:1] == ["dlx"]:
        _npm([a for a in args[1:] if not a.startswith("-")][:1], text, out)
    elif head == "cargo" and args[:1] and args[0] in ("install", "add"):
        _cargo(args[1:], text, out)
    elif head == "go" and args[:1] and args[0] in ("install", "get"):
        for a in args[1:]:
            if not a.startswith("-"):
                name = normalise_package("go", a)
                if name:
                    out.installs.append(Install("go", name, a))
    return out


def _index_variable(assign: str, text: str, out: Analysis) -> None:
    m = INDEX_VARIABLES.match(assign)
    if not m:
        return
    value = m.group(1).strip("'\"")
    for part in re.split(r"[\s,|]+", value):
        if part in ("direct", "off", ""):
            continue
        if assign.startswith("PIP_TRUSTED_HOST="):
            part = "https://" + part
        _index(part, text, out)


def _index(url: str, text: str, out: Analysis) -> None:
    url = url.strip("'\"")
    if "=" in url and "://" in url.split("=", 1)[1]:  # uv's --index name=url
        url = url.split("=", 1)[1]
    if "://" not in url:
        return  # a local directory or a registry *name*
    h = parse_url(url)
    if h is None:
        return
    out.indicators.append(Indicator(CUSTOM_INDEX, _snip(text, url), h.host, url=h.url))
    out.hosts.append(HostRef(h.host, h.port, h.url, "index"))


def _from_url(spec: str, text: str, out: Analysis) -> None:
    url = spec.strip("'\"")
    if url.startswith(("git+", "hg+", "svn+", "bzr+")):
        url = url.split("+", 1)[1]
    if url.startswith("git@"):
        url = "ssh://" + url.replace(":", "/", 1)
    h = parse_url(url)
    if h is None:
        return
    out.indicators.append(Indicator(INSTALL_URL, _snip(text, spec), h.host, url=h.url))
    out.hosts.append(HostRef(h.host, h.port, h.url, "install"))


_REDIRECTS = (">", ">>", "<", "2>", "&>", "2>&1")


def _words(args: list[str], value_opts: set[str], *, redirect_ends: bool = True) -> Iterator[tuple[str | None, str, int]]:
    """An install command's words as (option, value, position): an option written `--opt=value`, or one
    of `value_opts` followed by its value, comes as (option, value); an operand as (None, word); other
    flags are passed over. A shell redirection ends the command (its target is no package)."""
    takes: str | None = None
    for i, a in enumerate(args):
        if takes is not None:
            yield takes, a, i
            takes = None
            continue
        if redirect_ends and (a in _REDIRECTS or a.startswith("2>")):
            return
        if a.startswith("-"):
            opt, eq, val = a.partition("=")
            if eq:
                yield opt, val, i
            elif a in value_opts:
                takes = a
            continue
        yield None, a, i


_PIP_TAKES_VALUE = PIP_VALUE_OPTS | PIP_INDEX_OPTS | {"--trusted-host"}


def _pip(args: list[str], text: str, out: Analysis) -> None:
    for opt, a, i in _words(args, _PIP_TAKES_VALUE):
        if opt is not None:
            if opt in PIP_INDEX_OPTS:
                _index(a, text, out)
            elif opt == "--trusted-host":
                _index("https://" + a, text, out)
            elif opt in ("-e", "--editable") and "://" in a:
                _from_url(a, text, out)
            continue
        if a == "@" and i + 1 < len(args):  # PEP 508: `name @ https://...`
            continue
        if "://" in a or a.startswith(("git+", "git@")):
            _from_url(a.split("@", 1)[1].strip() if re.match(r"^[A-Za-z0-9._\-\[\]]+\s*@\s*\w+\+?\w*://", a) else a, text, out)
            continue
        name = normalise_package("pip", a)
        if name:
            out.installs.append(Install("pip", name, a))


def _npm(args: list[str], text: str, out: Analysis) -> None:
    for opt, a, _ in _words(args, NPM_VALUE_OPTS | {"--registry"}):
        if opt is not None:
            if opt == "--registry":
                _index(a, text, out)
            continue
        s = a.strip("'\"")
        alias = re.match(r"^(@?[^@/]+(?:/[^@]+)?)@npm:(.+)$", s)  # `lodash@npm:lodahs`: the real package is after npm:
        if alias:
            s = alias.group(2)
        if "://" in s or s.startswith(("git+", "git@")):
            _from_url(s, text, out)
            continue
        short = re.match(r"^(github|gitlab|bitbucket|gist):([\w.\-]+/[\w.\-]+)", s)
        if short:
            _from_url(f"https://{_GIT_SHORTHAND[short.group(1)]}/{short.group(2)}", text, out)
            continue
        if re.match(r"^[\w.\-]+/[\w.\-]+(?:#.*)?$", s) and not s.startswith("@"):  # `user/repo`: GitHub shorthand
            _from_url(f"https://github.com/{s.split('#', 1)[0]}", text, out)
            continue
        name = normalise_package("npm", s)
        if name:
            out.installs.append(Install("npm", name, a))


def _cargo(args: list[str], text: str, out: Analysis) -> None:
    # no redirection check, as before: `>` and its target are no valid crate name
    for opt, a, _ in _words(args, CARGO_VALUE_OPTS | {"--git", "--index"}, redirect_ends=False):
        if opt == "--git":
            _from_url(a, text, out)
        elif opt == "--index":
            _index(a, text, out)
        elif opt is None:
            name = normalise_package("cargo", a)
            if name:
                out.installs.append(Install("cargo", name, a))


def normalise_package(manager: str, spec: str) -> str | None:
    """A package spec as written -> its canonical name; None for paths, URLs, archives."""
    s = spec.strip().strip("'\"")
    if not s or "://" in s or s.startswith((".", "/", "~", "git+", "file:", "$")) or s.endswith(
            (".whl", ".tar.gz", ".tgz", ".zip", ".txt")):
        return None
    if manager == "pip":
        s = re.split(r"[\[=<>!~;@ ,]", s, maxsplit=1)[0]
        if "/" in s or not re.match(r"^[A-Za-z0-9][A-Za-z0-9._\-]*$", s):
            return None
        return re.sub(r"[-_.]+", "-", s.lower())
    if manager == "npm":
        if s.startswith("@"):
            scope, _, rest = s.partition("/")
            name = rest.split("@", 1)[0]
            return f"{scope}/{name}".lower() if name else None
        if "/" in s or ":" in s:
            return None
        name = s.split("@", 1)[0].lower()
        return name if re.match(r"^[a-z0-9][a-z0-9._\-]*$", name) else None
    if manager == "cargo":
        name = s.split("@", 1)[0].lower()
        return name if re.match(r"^[a-z0-9][a-z0-9_\-]*$", name) else None
    if manager == "go":
        name = s.split("@", 1)[0]
        return name if re.match(r"^[\w.\-~]+(?:/[\w.\-~]+)*$", name) and name not in ("all", "std", "cmd") else None
    return s


def _snip(text: str, needle: str) -> str:
    i = text.find(needle)
    if i < 0:
        return text[:300]
    a = max(0, i - 120)
    return text[a: i + len(needle) + 60].strip()[:300]
