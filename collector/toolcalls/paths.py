"""Paths that matter: credential stores a tool call may read, and places where a write persists.

Public halves of key pairs (`id_ed25519.pub`), SSH client config and known_hosts, `.aws/config`,
`.gitconfig` and `.env.example` hold no credential and are not listed.
"""

from __future__ import annotations

import re

# Credential stores: reading one puts a secret into the tool result (which goes to the router).
_END = r"(?![\w.\-])"  # `.npmrc` but not `.npmrc.example`, `.kube/config` but not `.kube/config.bak`
CREDENTIAL = re.compile(
    r"(?:\.aws/credentials|\.ssh/id_(?:rsa|dsa|ecdsa|ed25519)(?:_sk)?|\.ssh/[\w.-]*\.pem|"
    r"\.kube/config|\.docker/config\.json|\.netrc|\.git-credentials|\.npmrc|\.pypirc|"
    r"\.config/gcloud/(?:credentials\.db|legacy_credentials|access_tokens\.db|application_default_credentials\.json)|"
    r"application_default_credentials\.json|\.azure/(?:accessTokens\.json|msal_token_cache\.\w+)|wallet\.dat|"
    r"\.ethereum/keystore|keystore/UTC--[\w.:-]*|\.bitcoin/wallets?|\.electrum/wallets|solana/id\.json|"
    r"\.config/solana/id\.json|(?:MetaMask|Exodus|Phantom)/[^\s'\"]*|/etc/shadow|\.gnupg/private-keys-v1\.d|"
    r"\.password-store|\.vault-token|\.config/gh/hosts\.yml|\.terraform\.d/credentials\.tfrc\.json|"
    r"\.cargo/credentials(?:\.toml)?|\.config/op|\.local/share/keyrings)" + _END
    # a whole credential directory (archived, copied, uploaded)
    + r"|(?:\.ssh|\.aws|\.gnupg|\.kube|\.docker|\.config/gcloud)/?(?=$|[\s'\";|&)])",
    re.I,
)
# `.env`, `.env.local`, `.env.production` (not `.env.example`, `.envrc`, `venv/.env/...` directories)
ENV_FILE = re.compile(r"(?:^|[\s/'\"=@<])\.env(?:\.(?:local|production|prod|development|dev|staging|test))?(?![\w./-])")

# Writes to these persist a foothold (the analysis adds shell rc files when the written text runs code).
PERSIST_ALWAYS = re.compile(
    r"(?:\.ssh/authorized_keys2?$|^/etc/cron(?:tab$|\.d/|\.(?:hourly|daily|weekly|monthly)/)|/var/spool/cron/|"
    r"/systemd/(?:system|user)/[^/]+\.(?:service|timer|socket|path)$|/systemd/(?:system|user)/[^/]+\.d/[^/]+\.conf$|"
    r"\.config/systemd/user/|^/etc/ld\.so\.preload$|^/etc/rc\.local$|/Library/Launch(?:Agents|Daemons)/|"
    r"^/etc/init\.d/|^/etc/sudoers(?:\.d/|$)|\.config/autostart/[^/]+\.desktop$)",
)
SHELL_RC = re.compile(
    r"(?:(?:^|/)\.(?:bashrc|bash_profile|bash_login|profile|zshrc|zprofile|zshenv|zlogin|kshrc|cshrc|tcshrc|"
    r"bash_logout|bash_aliases)$|^/etc/(?:profile|bash\.bashrc|zsh/zshrc|zshrc|environment)$|^/etc/profile\.d/|"
    r"\.config/fish/config\.fish$)",
)
# What makes a shell rc line a payload rather than configuration (PATH exports, aliases, `eval "$(pyenv init -)"`)
RC_PAYLOAD = re.compile(
    r"\b(?:curl|wget|nc|ncat|netcat|socat|telnet)\b|/dev/(?:tcp|udp)/|\bbase64\b|\bxxd\b|\bnohup\b|"
    r"\bPROMPT_COMMAND\s*=|\bLD_PRELOAD\s*=|\btrap\b|\balias\s+(?:sudo|ssh|git|su|ls|cd|cat)\s*=|"
    r"\bpython[\d.]*\s+-c\b|\bperl\s+-e\b|&\s*$|&\s*disown",
    re.M,
)


def normalise(path: str) -> str:
    """`~`, `$HOME`, `${HOME}`, `/root`, `/home/u` all become `~/`-relative for matching."""
    p = path.strip().strip("'\"")
    p = re.sub(r"^(?:\$HOME|\$\{HOME\}|/root|/home/[^/]+|/Users/[^/]+)(?=/|$)", "~", p)
    return p


def persists(path: str) -> bool:
    """A write to `path` persists code regardless of content."""
    return bool(PERSIST_ALWAYS.search(normalise(path)))


def shell_rc(path: str) -> bool:
    return bool(SHELL_RC.search(normalise(path)))
