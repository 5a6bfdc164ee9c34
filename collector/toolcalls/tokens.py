"""Shell text -> simple commands with their redirections (sans-IO; nothing is ever executed).

Heredoc bodies are cut out before tokenising (so the lines of a script written with `cat > f <<EOF`
are not taken for commands) and handed back by name; each simple command knows its stdin (a file,
a heredoc, a here-string) and its stdout targets, so the analysis can tell text that runs from text
that is written to a file.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from functools import lru_cache

SEPARATORS = {";", "&&", "||", "&", "\n"}
PIPES = {"|", "|&"}
WRAPPERS = {"sudo", "doas", "nohup", "time", "exec", "command", "builtin", "nice", "stdbuf", "setsid", "xargs",
            "env", "timeout", "unbuffer", "chronic", "ionice", "taskset", "chroot", "runuser", "su", "caffeinate"}
KEYWORDS = {"{", "}", "if", "then", "else", "elif", "fi", "do", "done", "while", "until", "!", "[[", "]]", "esac"}
_VALUE_WRAPPER_OPTS = {"sudo": {"-u", "-g", "-C", "-D", "-h", "-p", "-r", "-t", "-U"}, "timeout": {"-s", "-k", "--signal", "--kill-after"},
                       "nice": {"-n"}, "ionice": {"-c", "-n"}, "taskset": set(), "runuser": {"-u", "-g"}, "su": {"-c"}}
_ASSIGN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_HEREDOC = re.compile(r"(?<!<)<<(-?)[ \t]*(['\"]?)\\?([A-Za-z_][A-Za-z0-9_.-]*)\2")
HEREDOC_PREFIX = "__rw_heredoc_"
_REDIR_OUT = {">", ">>", ">|", "&>", "&>>", ">&"}
_PUNCT = set("();<>|&\n")


@dataclass
class Simple:
    """One simple command: `head` is the command's basename after wrappers (sudo, env X=1, nohup...)."""

    head: str
    args: list[str]
    argv: list[str]  # as written (wrappers and assignments included, redirections removed)
    assignments: list[str] = field(default_factory=list)  # X=y before the command (and `env X=y`)
    stdin: str | None = None  # '<' file, or HEREDOC_PREFIX + n
    herestring: str | None = None  # `<<< text`
    stdout: list[tuple[str, bool]] = field(default_factory=list)  # (target, append)
    raw: str = ""  # the words with their redirections, as tokenised

    @property
    def text(self) -> str:
        return " ".join(self.argv)


@dataclass
class Script:
    """A parsed command line: pipelines (lists of simple commands) in order, plus heredoc bodies."""

    pipelines: list[list[Simple]]
    heredocs: dict[str, str]

    def commands(self) -> list[Simple]:
        return [c for p in self.pipelines for c in p]


def cut_heredocs(text: str) -> tuple[str, dict[str, str]]:
    """`cat > f <<'EOF'\\n...\\nEOF` -> (`cat > f < __rw_heredoc_0`, {name: body})."""
    if "<<" not in text:
        return text, {}
    lines = text.split("\n")
    out: list[str] = []
    bodies: dict[str, str] = {}
    i = 0
    while i < len(lines):
        line = lines[i]
        pending: list[tuple[bool, str, str]] = []

        def repl(m: re.Match, pending: list = pending) -> str:
            key = f"{HEREDOC_PREFIX}{len(bodies) + len(pending)}"
            pending.append((m.group(1) == "-", m.group(3), key))
            return f"< {key}"

        out.append(_HEREDOC.sub(repl, line))
        i += 1
        for dash, delim, key in pending:
            body: list[str] = []
            while i < len(lines):
                cur = lines[i].lstrip("\t") if dash else lines[i]
                if cur.strip() == delim:
                    i += 1
                    break
                body.append(lines[i])
                i += 1
            bodies[key] = "\n".join(body)
    return "\n".join(out), bodies


@lru_cache(maxsize=8192)
def tokens(text: str) -> tuple[str, ...] | None:
    """Shell words and operators; None when the quoting does not balance."""
    lex = shlex.shlex(text, posix=True, punctuation_chars="();<>|&\n")
    lex.whitespace = " \t\r"
    lex.whitespace_split = True
    lex.commenters = ""
    try:
        return tuple(lex)
    except ValueError:
        return None


def parse(text: str) -> Script | None:
    """Shell text -> Script; None if unparsable (unbalanced quotes)."""
    body, heredocs = cut_heredocs(text)
    toks = tokens(_strip_comments(body))
    if toks is None:
        return None
    pipelines: list[list[Simple]] = []
    pipe: list[Simple] = []
    argv: list[str] = []

    def end_command() -> None:
        nonlocal argv
        if argv:
            s = simple(argv)
            if s is not None:
                pipe.append(s)
        argv = []

    for tok in toks:
        if not tok or not set(tok) <= _PUNCT:
            argv.append(tok)
            continue
        if tok in ("<(", ">("):  # process substitution: its words stay with the command
            continue
        op = tok.replace("(", "").replace(")", "")  # shlex groups `)|`, `);`, `))` into one token
        if not op:
            continue
        if op.rstrip("\n") in PIPES:
            end_command()
            continue
        if op in _REDIR_OUT or op in ("<", "<<<", "<&", "<>"):
            argv.append(op)
            continue
        if set(op) <= set("|&;\n"):
            end_command()
            if pipe:
                pipelines.append(pipe)
            pipe = []
            continue
        argv.append(op)
    end_command()
    if pipe:
        pipelines.append(pipe)
    return Script(pipelines, heredocs)


def simple(argv: list[str]) -> Simple | None:
    """Redirections out of argv, wrappers and assignments off the head."""
    words: list[str] = []
    stdin = herestring = None
    stdout: list[tuple[str, bool]] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        nxt = argv[i + 1] if i + 1 < len(argv) else None
        if a in _REDIR_OUT:
            if words and words[-1] in ("0", "1", "2") and a != "&>":
                words.pop()  # `2>` file descriptor, not an argument
            if nxt is not None and not (a == ">&" and nxt.isdigit()) and nxt != "-":
                stdout.append((nxt, a in (">>", "&>>")))
            i += 2
            continue
        if a == "<":
            if words and words[-1] == "0":
                words.pop()
            stdin = nxt
            i += 2
            continue
        if a == "<<<":
            herestring = nxt
            i += 2
            continue
        if a in ("<&", "<>"):
            i += 2
            continue
        words.append(a)
        i += 1
    if not words:
        return None
    head, args, assigns = _head(words)
    return Simple(head, args, words, assigns, stdin, herestring, stdout, " ".join(argv))


def _head(argv: list[str]) -> tuple[str, list[str], list[str]]:
    """(basename of the command after wrappers and keywords, its args, assignments before it)."""
    i = 0
    assigns: list[str] = []
    while i < len(argv):
        a = argv[i]
        base = a.rsplit("/", 1)[-1].lower()
        if _ASSIGN.match(a):
            assigns.append(a)
            i += 1
            continue
        if base in KEYWORDS:
            i += 1
            continue
        if base == "busybox" and i + 1 < len(argv) and not argv[i + 1].startswith("-"):
            i += 1  # `busybox wget ...`: the applet is the command
            continue
        if base in WRAPPERS:
            rest = argv[i + 1:]
            if not [x for x in rest if not x.startswith("-") and not _ASSIGN.match(x)]:
                return base, rest, assigns  # `env`, `sudo -l`: the wrapper is the command
            i += 1
            opts = _VALUE_WRAPPER_OPTS.get(base, set())
            while i < len(argv) and argv[i].startswith("-"):
                i += 2 if argv[i] in opts else 1
            if base == "timeout" and i < len(argv):
                i += 1  # the duration
            if base == "su" and "-c" in argv:
                return "sh", ["-c", argv[argv.index("-c") + 1] if argv.index("-c") + 1 < len(argv) else ""], assigns
            continue
        return base, argv[i + 1:], assigns
    return "", [], assigns


def _strip_comments(text: str) -> str:
    """Drop `# ...` comments that start a line or follow whitespace outside quotes (shlex keeps '#')."""
    if "#" not in text:
        return text
    out = []
    for line in text.split("\n"):
        if "#" in line:
            line = _comment_cut(line)
        out.append(line)
    return "\n".join(out)


def _comment_cut(line: str) -> str:
    quote = None
    prev = " "
    for i, ch in enumerate(line):
        if quote:
            if ch == quote and prev != "\\":
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and prev in " \t;&|(":
            return line[:i]
        prev = ch
    return line
