"""Typosquat distance against offline lists of popular packages shipped with the project.

`popular/pypi.txt` and `popular/npm.txt` are the 5,000 most downloaded packages of each registry
(taken from a registry snapshot, names normalised); `crates.txt` and `go.txt` are hand-curated.
A package that is not popular but lies within a small Damerau-Levenshtein distance of a popular one
(`reqeusts` -> `requests`, one transposition) is a typosquat candidate. Distance 2 is allowed only
for names of 8 characters or more (shorter real packages sit one or two edits from popular ones:
`nuxt`/`next`, `rocket`/`socket2`); Go module paths are compared segment-wise against each popular
module (a package inside a popular module is that module; one edit in it is a typosquat), since two
edits across a whole path (`golang.org/x/exp` vs `golang.org/x/text`) say nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources

_FILES = {"pip": "pypi.txt", "npm": "npm.txt", "cargo": "crates.txt", "go": "go.txt"}


@dataclass(frozen=True)
class Verdict:
    popular: bool
    nearest: str | None
    distance: int | None


@cache
def popular(manager: str) -> tuple[frozenset[str], dict[int, tuple[str, ...]]]:
    """(set of names, names grouped by length) for one package manager."""
    fname = _FILES.get(manager)
    if fname is None:
        return frozenset(), {}
    text = resources.files("collector.toolcalls").joinpath("popular").joinpath(fname).read_text()
    names = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    if manager == "cargo":
        names = [n.lower() for n in names]
    by_len: dict[int, list[str]] = {}
    for n in names:
        by_len.setdefault(len(n), []).append(n)
    return frozenset(names), {k: tuple(v) for k, v in by_len.items()}


def damerau_levenshtein(a: str, b: str, limit: int) -> int:
    """Optimal-string-alignment distance, stopping early once every path exceeds `limit`."""
    if a == b:
        return 0
    la, lb = len(a), len(b)
    if abs(la - lb) > limit:
        return limit + 1
    prev2: list[int] = []
    prev = list(range(lb + 1))
    for i in range(1, la + 1):
        cur = [i] + [0] * lb
        best = cur[0]
        for j in range(1, lb + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            v = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                v = min(v, prev2[j - 2] + 1)
            cur[j] = v
            best = min(best, v)
        if best > limit:
            return limit + 1
        prev2, prev = prev, cur
    return prev[lb]


@lru_cache(maxsize=16384)
def check(manager: str, name: str, max_distance: int = 2) -> Verdict:
    """Is `name` popular; if not, the nearest popular name within `max_distance` (short names: 1)."""
    names, by_len = popular(manager)
    if not names:
        return Verdict(False, None, None)
    n = name if manager == "go" else name.lower()
    if n in names:
        return Verdict(True, None, None)
    if manager == "cargo" and (n.replace("-", "_") in names or n.replace("_", "-") in names):
        return Verdict(True, None, None)
    if manager == "go":
        return _check_go(n, names)
    limit = max_distance if len(n) >= 8 else 1
    if len(n) < 4:
        return Verdict(False, None, None)
    best: tuple[int, str] | None = None
    for length in range(len(n) - limit, len(n) + limit + 1):
        for cand in by_len.get(length, ()):
            d = damerau_levenshtein(n, cand, limit)
            if d <= limit and (best is None or d < best[0]):
                best = (d, cand)
                if d == 1:
                    break
        if best is not None and best[0] == 1:
            break
    if best is None:
        return Verdict(False, None, None)
    return Verdict(False, best[1], best[0])


def _check_go(path: str, names: frozenset[str]) -> Verdict:
    """A Go import path against each popular module: the same leading segments (a package of that
    module) is popular; one edit in them is a typosquat."""
    segs = path.split("/")
    best: tuple[int, str] | None = None
    for mod in names:
        k = mod.count("/") + 1
        if len(segs) < k:
            continue
        head = "/".join(segs[:k])
        if head == mod:
            return Verdict(True, None, None)
        if abs(len(head) - len(mod)) <= 1 and (best is None or best[1] > mod):
            d = damerau_levenshtein(head, mod, 1)
            if d == 1:
                best = (1, mod)
    return Verdict(False, best[1], 1) if best else Verdict(False, None, None)
