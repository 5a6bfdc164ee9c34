"""Where the libssl uprobes go: OpenSSL's internal read/write functions when they can be found,
because a breakpoint there costs a tenth of one on the exported functions.

A uprobe is a breakpoint: the kernel must then execute the instruction it replaced. It emulates a
few (push of a register, nop, call, jmp) and single-steps every other one out of line, which takes a
second trap. `SSL_write_ex` and `SSL_read_ex` in OpenSSL 3 begin with `sub rsp, 8` (not emulated):
measured by `bench/tls_probe_cost.py --profile` on this machine (6.18, a VM), a do-nothing program
on those entries cost 8.8 us per hit, while the same program on the internal functions they call
(`ssl_write_internal`, `ssl_read_internal`, which begin with `push r14` / `push r13`) cost 0.85 us.
Both exported functions of a direction call the same internal one, with the arguments of the `_ex`
form (ssl, buf, num, size_t *processed; 1 on success), so one probe there covers both, with the
`_ex` programs.

The internal function is found without symbols (Debian strips them): the `_ex` function's first
instructions must be a `call` preceded only by instructions that leave the argument registers alone
(`endbr64`, `sub rsp, N`, `nop`), the plain function must call the same address, and the target must
begin with a `push` of a register or a `nop`. A library of another shape keeps the exported probes.
"""

from __future__ import annotations

from dataclasses import dataclass

# (plain function, its program, _ex function, its program): one direction each
DIRECTIONS = (
    ("SSL_write", "ssl_write_enter", "SSL_write_ex", "ssl_write_ex_enter"),
    ("SSL_read", "ssl_read_enter", "SSL_read_ex", "ssl_read_ex_enter"),
)
_HARMLESS = {"endbr64", "nop"}  # before the call: touch no argument register
_PLAIN_SCAN = 192  # bytes of the plain function searched for the call (an argument check comes first)


@dataclass(frozen=True)
class ProbePoint:
    label: str  # for logs: "SSL_write", or "SSL_write_ex->0x355a0" for an internal function
    program: str  # the entry program; every point also gets the return program
    offset: int  # file offset of the probed instruction


def probe_points(path: str, offsets: dict[str, int]) -> list[ProbePoint]:
    """The entry points to probe in libssl-like file `path`, given the file offsets of its exported
    SSL_* functions (`offsets`): per direction the internal function when found, else the exported
    ones."""
    points: list[ProbePoint] = []
    try:
        with open(path, "rb") as f:
            def code(off: int, n: int) -> bytes:
                f.seek(off)
                return f.read(n)

            for plain, plain_prog, ex, ex_prog in DIRECTIONS:
                target = _internal(code, offsets.get(plain), offsets.get(ex), _extent(offsets.get(plain), offsets))
                if target is not None:
                    points.append(ProbePoint(f"{ex}->{target:#x}", ex_prog, target))
                else:
                    points += [ProbePoint(sym, prog, offsets[sym]) for sym, prog in ((plain, plain_prog), (ex, ex_prog))
                               if sym in offsets]
    except OSError:
        return [ProbePoint(sym, prog, offsets[sym]) for d in DIRECTIONS for sym, prog in (d[:2], d[2:])
                if sym in offsets]
    return points


def _extent(start: int | None, offsets: dict[str, int]) -> int:
    """How many bytes from `start` may belong to that function: up to the next exported SSL_*
    function (a linear sweep must not read a neighbour's call), at most _PLAIN_SCAN."""
    if start is None:
        return 0
    return min([o - start for o in offsets.values() if o > start] + [_PLAIN_SCAN])


def _internal(code, plain: int | None, ex: int | None, plain_len: int) -> int | None:
    """The internal function both exported functions call, when it is safe and cheaper to probe."""
    if plain is None or ex is None:
        return None
    import capstone  # pinned in pyproject (collector.ebpf.go_tls uses it too)

    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    target = None
    for i, (_addr, _size, mnemonic, ops) in enumerate(md.disasm_lite(code(ex, 32), ex)):
        if mnemonic == "call":
            target = _immediate(ops)
            break
        if i >= 3 or not (mnemonic in _HARMLESS or (mnemonic == "sub" and ops.startswith("rsp, "))):
            return None
    if target is None:
        return None
    calls = {_immediate(ops) for _a, _s, m, ops in md.disasm_lite(code(plain, plain_len), plain) if m == "call"}
    if target not in calls:
        return None
    first = next(md.disasm_lite(code(target, 16), target), None)
    if first is None:
        return None
    _a, _s, mnemonic, ops = first
    if mnemonic == "nop" or (mnemonic == "push" and ops.isalnum()):  # push of a register, not of memory
        return target
    return None


def _immediate(ops: str) -> int | None:
    try:
        return int(ops, 16)
    except ValueError:
        return None  # an indirect call
