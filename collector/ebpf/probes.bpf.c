// routerwatch probes: tracepoints and uprobes only (no kprobes, no fentry).
//
// Kernel structs are never walked through compiled-in headers (they may not match the running
// kernel); the few fields read come from BTF-derived OFF_* constants passed with -D by loader.py.
//
// One ring buffer carries every record, submitted with BPF_RB_NO_WAKEUP: the reader polls on a
// timer and drains in bulk, so a busy workload never pays a wakeup per event. Records:
//   T_CONN  one per TCP socket, at tcp:tcp_destroy_sock, with the kernel's own byte and segment
//           counters (tcp_sock.bytes_acked/bytes_received/segs_out/segs_in) and the owning process
//   T_EXEC  sched:sched_process_exec: pid, ppid, start time, filename, argv (short-lived processes)
//   T_EXIT  sched:sched_process_exit of a thread-group leader
//   T_DNS   libc getaddrinfo uprobe/uretprobe: name and resolved addresses per pid
//   T_SSL   libssl SSL_write/SSL_read(_ex) and Go crypto/tls (*Conn).Write/Read plaintext, chunked,
//           with the socket it went through
//   T_DNSQ  a DNS query as sent (sendto/sendmsg/sendmmsg/write to port 53, or on a socket connected
//           to port 53): the first DNSQ_LEN bytes of the user buffer, read from user memory only, at
//           sock:sock_send_length (no syscall tracepoint: see "DNS queries at the socket send" below)
// Every reserve failure is counted in `counters` so a missed event is visible, never silent.
//
// Scope (`routerwatch collect --netns/--cgroup`, e.g. several collectors on one machine, each
// recording one "host"): with -DSCOPE_NETNS=<inode> only sockets of that network namespace (the
// socket's own netns, read at BTF offsets, so softirq-context state changes are filtered too) and
// processes whose task is in it count; with -DSCOPE_CGROUP=<id> -DSCOPE_CGROUP_LEVEL=<depth> only
// tasks in that cgroup or below it (bpf_get_current_ancestor_cgroup_id), and sockets whose owner
// was seen in it in process context. Everything out of scope returns before any counter or record.
#include <uapi/linux/ptrace.h>

// ABI constants, defined here so no kernel header beyond ptrace.h is needed
#define RW_AF_INET 2
#define RW_AF_INET6 10
#define RW_IPPROTO_TCP 6
#define RW_IPPROTO_UDP 17

#define T_CONN 1
#define T_EXEC 2
#define T_EXIT 3
#define T_DNS 4
#define T_SSL 5
#define T_DNSQ 6

#define C_CONN_SEEN 0      // tcp_destroy_sock of a tracked or untracked socket
#define C_CONN_LOST 1      // ring buffer full: conn record dropped
#define C_EXEC_LOST 2
#define C_SSL_LOST 3
#define C_SSL_TRUNC 4      // plaintext calls cut at SSL_MAX_CHUNKS * SSL_CHUNK bytes
#define C_MAP_FULL 5       // socket table full: socket tracked from destroy only
#define C_DNS_LOST 6
#define C_EXEC_SEEN 7
#define C_SSL_SEEN 8
#define C_DNS_SEEN 9
#define C_EXIT_LOST 10
#define C_CONN_UNCONNECTED 11  // listeners / never-connected sockets, not emitted
#define C_DNSQ_SEEN 12
#define C_DNSQ_LOST 13
#define N_COUNTERS 14

#ifndef RINGBUF_PAGES
#define RINGBUF_PAGES 4096
#endif
#ifndef MAX_SOCKETS
#define MAX_SOCKETS 262144
#endif
#define SSL_CHUNK 4096
#ifndef SSL_MAX_CHUNKS
#define SSL_MAX_CHUNKS 64
#endif
#define ARGS_LEN 384
#define FNAME_LEN 192
#define DNS_NAME_LEN 128
#define DNS_MAX_ADDRS 12

#define TCP_ESTABLISHED 1
#define TCP_SYN_SENT 2
#define TCP_CLOSE 7
#define TCP_LISTEN 10

BPF_RINGBUF_OUTPUT(events, RINGBUF_PAGES);
BPF_PERCPU_ARRAY(counters, u64, N_COUNTERS);

static __always_inline void count(u32 idx) {
    u64 *v = counters.lookup(&idx);
    if (v) (*v)++;
}

struct task_info {
    u32 tgid;
    u32 ppid;
    u32 uid;
    u32 pad;
    u64 start_ns;     // group leader's start_boottime (ns since boot, as /proc/PID/stat)
    u64 cgroup_id;
    char comm[16];
};

// -- scope -----------------------------------------------------------------------------------------
#ifdef SCOPE_NETNS
static __always_inline u32 net_inum(void *net) {
    u32 inum = 0;
    if (net) bpf_probe_read_kernel(&inum, sizeof(inum), net + OFF_NET_NS_INUM);
    return inum;
}
static __always_inline int sk_in_scope(void *sk) {
    void *net = 0;
    bpf_probe_read_kernel(&net, sizeof(net), sk + OFF_SK_NET);
    return net_inum(net) == SCOPE_NETNS;
}
#else
static __always_inline int sk_in_scope(void *sk) { return 1; }
#endif

static __always_inline int task_in_scope(void) {
#ifdef SCOPE_NETNS
    void *task = (void *)bpf_get_current_task();
    void *nsproxy = 0, *net = 0;
    bpf_probe_read_kernel(&nsproxy, sizeof(nsproxy), task + OFF_TASK_NSPROXY);
    if (!nsproxy) return 0;  // an exiting task past exit_task_namespaces
    bpf_probe_read_kernel(&net, sizeof(net), nsproxy + OFF_NSPROXY_NET_NS);
    if (net_inum(net) != SCOPE_NETNS) return 0;
#endif
#ifdef SCOPE_CGROUP
    if (bpf_get_current_ancestor_cgroup_id(SCOPE_CGROUP_LEVEL) != SCOPE_CGROUP) return 0;
#endif
    return 1;
}

// The task is read through its BTF-typed pointer (bpf_get_current_task_btf): plain loads, which the
// verifier checks against the kernel's BTF at these offsets and makes fault-safe, instead of a
// bpf_probe_read_kernel call each (~30 ns less a field here: docs/performance.md, 2026-12-06 (12:10)).
static __always_inline void read_task(struct task_info *t) {
    u64 pid_tgid = bpf_get_current_pid_tgid();
    void *task = (void *)bpf_get_current_task_btf();
    t->tgid = pid_tgid >> 32;
    t->uid = (u32)bpf_get_current_uid_gid();
    t->cgroup_id = bpf_get_current_cgroup_id();
    bpf_get_current_comm(&t->comm, sizeof(t->comm));
    void *parent = *(void **)(task + OFF_TASK_REAL_PARENT);
    if (parent) t->ppid = *(u32 *)(parent + OFF_TASK_TGID);
    void *leader = *(void **)(task + OFF_TASK_GROUP_LEADER);
    if (leader) t->start_ns = *(u64 *)(leader + OFF_TASK_START_TIME);
}

// -- TCP sockets --------------------------------------------------------------------------------
struct sock_state {
    struct task_info task;
    u64 ts_first;        // SYN_SENT (outbound) or first state change / I/O seen
    u64 ts_established;
    u8 outbound;         // 1: this host connected (SYN_SENT seen in the connecting process)
    u8 established;
    u8 owned;            // task filled (connect or first send/recv in process context)
    u8 last_state;       // last of SYN_SENT / ESTABLISHED / CLOSE-from-SYN_SENT seen (destroy records say CLOSE)
    u64 app_sent;        // bytes the application handed to sendmsg/write (sock:sock_send_length)
    u64 app_recv;        // bytes the application read (sock:sock_recv_length, MSG_PEEK excluded)
    // the 4-tuple as last seen in a state change: a refused connect is disconnected (ports and
    // addresses cleared) before the socket is destroyed, so destroy alone would not know it
    u16 sport;
    u16 dport;
    u16 family;
    u8 rst;              // bit 0: RST received (tcp:tcp_receive_reset), bit 1: RST sent (tcp:tcp_send_reset),
                         // bit 2: the first reset of the socket was the one it sent
    u8 in_scope;         // the owner was in scope when read in process context (cgroup scope)
    u8 saddr[16];
    u8 daddr[16];
    // the connection's id, fixed when the entry is made (kernel cookie if one exists, else
    // SYNTHETIC_UID of the creation time): the destroy record's cookie, readable while the socket lives
    // (userspace reads this entry to name an open connection's exchanges: collector.ebpf.loader)
    u64 cookie;
};
BPF_HASH(socks, u64, struct sock_state, MAX_SOCKETS);

// An id unique per boot when the kernel made no cookie: bit 63 set (the kernel's cookie counter
// never gets there), a time in ns, and the CPU (two events on one CPU are more than a ns apart).
#define SYNTHETIC_UID(ts) ((1ULL << 63) | (((ts) & ((1ULL << 55) - 1)) << 8) | (bpf_get_smp_processor_id() & 0xff))

struct conn_event {
    u32 type;
    u8 family;
    u8 outbound;
    u8 established;
    u8 owned;
    struct task_info task;
    u64 sk;
    u64 cookie;
    u64 ts_first;
    u64 ts_established;
    u64 ts_end;
    u64 k_sent;          // tcp_sock.bytes_sent - bytes_retrans: payload transmitted (kernel's count)
    u64 k_recv;          // tcp_sock.bytes_received: payload received (+1 when a FIN arrived)
    u64 app_sent;        // application-level byte counts, exact for sockets tracked from the start
    u64 app_recv;
    u32 segs_out;
    u32 segs_in;
    u16 sport;
    u16 dport;
    u8 last_state;
    u8 rst;
    u8 pad[2];
    u8 saddr[16];
    u8 daddr[16];
};

// The socket fields a flow needs, read in two probe reads instead of one per field: the span of
// struct sock_common holding the addresses, destination port, family and cookie, and the span of
// struct inet_sock holding the source address and port. Both spans come from the BTF offsets.
#define RW_MIN(a, b) ((a) < (b) ? (a) : (b))
#define RW_MAX(a, b) ((a) > (b) ? (a) : (b))
#define SKC_LO RW_MIN(RW_MIN(RW_MIN(OFF_SK_DADDR, OFF_SK_RCV_SADDR), RW_MIN(OFF_SK_DPORT, OFF_SK_FAMILY)), \
                      RW_MIN(RW_MIN(OFF_SK_V6_DADDR, OFF_SK_V6_RCV_SADDR), OFF_SK_COOKIE))
#define SKC_HI RW_MAX(RW_MAX(RW_MAX(OFF_SK_DADDR + 4, OFF_SK_RCV_SADDR + 4), RW_MAX(OFF_SK_DPORT + 2, OFF_SK_FAMILY + 2)), \
                      RW_MAX(RW_MAX(OFF_SK_V6_DADDR + 16, OFF_SK_V6_RCV_SADDR + 16), OFF_SK_COOKIE + 8))
#define SKC_SPAN (SKC_HI - SKC_LO)
#define INET_LO RW_MIN(OFF_INET_SADDR, OFF_INET_SPORT)
#define INET_SPAN (RW_MAX(OFF_INET_SADDR + 4, OFF_INET_SPORT + 2) - INET_LO)
_Static_assert(SKC_SPAN <= 192, "sock_common tuple fields unexpectedly far apart");
_Static_assert(INET_SPAN <= 16, "inet_sock source address and port unexpectedly far apart");
#define SKC(b, off) ((b) + (off) - SKC_LO)
#define INET(b, off) ((b) + (off) - INET_LO)

static __always_inline u16 get16(const u8 *p) {
    u16 v;
    __builtin_memcpy(&v, p, 2);
    return v;
}

// A raw tracepoint: the program gets inet_sock_set_state's arguments (sk, oldstate, newstate)
// without the kernel first filling the perf record of every field (six transitions per loopback
// connection, most of them returning at once); the few sock fields needed are read at their BTF
// offsets (OFF_SK_*), like everything else read from kernel structs.
RAW_TRACEPOINT_PROBE(inet_sock_set_state) {
    int ns = (int)ctx->args[2];
    // Only connect (SYN_SENT), ESTABLISHED and CLOSE from SYN_SENT carry what a flow needs (owner,
    // tuple, success); the other transitions (four more per connection) return here without a map
    // lookup. An accepted socket is created by the kernel at the handshake's last ACK and established
    // at once: its entry is made at ESTABLISHED. CLOSE from SYN_SENT only completes an entry's tuple:
    // connect() sets SYN_SENT before it picks the local port, and a refused connect never reaches
    // ESTABLISHED and is disconnected (ports cleared) before it is destroyed. Any other CLOSE changes
    // nothing but the entry's last state, and every socket passes CLOSE before tcp_destroy_sock (the
    // kernel destroys a TCP socket only in CLOSE), so the destroy record says CLOSE without an update
    // here (docs/performance.md, 2026-12-06 (12:10)). A socket first seen closing (opened before the
    // collector) gets no entry, so its record carries the kernel's own byte counts.
    if (ns == TCP_CLOSE) {
        if ((int)ctx->args[1] != TCP_SYN_SENT) return 0;
    } else if (ns != TCP_SYN_SENT && ns != TCP_ESTABLISHED && ns != TCP_LISTEN) return 0;
    void *skp = (void *)ctx->args[0];
    if (!sk_in_scope(skp)) return 0;
    u64 sk = (u64)skp;
    if (ns == TCP_LISTEN) { socks.delete(&sk); return 0; }
    struct sock_state *s = socks.lookup(&sk);  // an entry is only ever made for a TCP socket
    struct sock_state z = {};
    u8 skc[SKC_SPAN];
    int have_skc = 0;
    if (s) {
        asm volatile("" : "+r"(s));  // keeps clang from computing field addresses before the null check
    } else {  // a new entry is filled on the stack and inserted once, at the end (no second lookup)
        if (ns == TCP_CLOSE) return 0;
        u16 proto = 0;
        bpf_probe_read_kernel(&proto, sizeof(proto), skp + OFF_SK_PROTOCOL);
        if (proto != RW_IPPROTO_TCP) return 0;
        z.ts_first = bpf_ktime_get_ns();
        u64 kcookie = 0;
        if (ns == TCP_SYN_SENT) {
            bpf_probe_read_kernel(&kcookie, sizeof(kcookie), skp + OFF_SK_COOKIE);
            // connect() runs in the connecting process: attribute here, even for short-lived ones
            read_task(&z.task);
            z.outbound = 1;
            z.owned = 1;
            z.in_scope = task_in_scope();
        } else {  // ESTABLISHED: the tuple is read below anyway, and the cookie is in the same span
            bpf_probe_read_kernel(skc, sizeof(skc), skp + SKC_LO);
            have_skc = 1;
            __builtin_memcpy(&kcookie, SKC(skc, OFF_SK_COOKIE), 8);
            z.established = 1;
            z.ts_established = z.ts_first;
        }
        z.cookie = kcookie ? kcookie : SYNTHETIC_UID(z.ts_first);
        s = &z;
    }
    s->last_state = ns;
    if (ns == TCP_SYN_SENT) {
        // connect() picks the local port after SYN_SENT: the tuple is read at ESTABLISHED or, for a
        // connect that fails, at CLOSE; a reconnect (after a disconnect) reads it again
        s->sport = 0;
    } else if (!s->sport) {  // the tuple is fixed once connected: read it until the local port is known
        if (!have_skc) bpf_probe_read_kernel(skc, sizeof(skc), skp + SKC_LO);
        u16 dport = get16(SKC(skc, OFF_SK_DPORT));
        if (dport) {
            u8 inet[INET_SPAN];
            bpf_probe_read_kernel(inet, sizeof(inet), skp + INET_LO);
            u16 fam = get16(SKC(skc, OFF_SK_FAMILY));
            s->sport = __builtin_bswap16(get16(INET(inet, OFF_INET_SPORT)));  // what the tracepoint reports
            s->dport = __builtin_bswap16(dport);
            s->family = fam;
            if (fam == RW_AF_INET6) {
                __builtin_memcpy(s->saddr, SKC(skc, OFF_SK_V6_RCV_SADDR), 16);
                __builtin_memcpy(s->daddr, SKC(skc, OFF_SK_V6_DADDR), 16);
            } else {
                __builtin_memcpy(s->saddr, SKC(skc, OFF_SK_RCV_SADDR), 4);
                __builtin_memcpy(s->daddr, SKC(skc, OFF_SK_DADDR), 4);
            }
        }
    }
    if (ns == TCP_ESTABLISHED && !s->established) {
        s->established = 1;
        s->ts_established = bpf_ktime_get_ns();
    }
    if (s == &z && socks.update(&sk, &z) != 0) count(C_MAP_FULL);
    return 0;
}

// Inbound (accepted) sockets change state in softirq context: the first send/recv in process
// context names their owner. Also links an in-flight SSL call on this thread to its socket.
struct ssl_call {
    u64 ssl;
    u64 buf;
    u64 len_ptr;    // size_t* of the _ex variants, else 0
    u64 sk;
    u32 num;
    u8 dir;         // 0 write (client->server for a client), 1 read
    u8 pad[3];
    // an SSL* (or a Go conn key) whose last write hit no socket on this thread (memory-BIO stacks
    // such as Node's TLSWrap: the ciphertext is written to the socket right after SSL_write
    // returns; Go: the socket write follows Write's entry): the thread's next socket send names it
    u64 unbound;
};
// The call in flight on a thread, in the thread's own BPF storage (a task-local slot: no hash, no
// bucket lock, freed with the thread; `ssl` 0 = no call in flight), so the entry, the return and
// every socket send/receive of the thread find it for a few ns. It replaced a hash map keyed by
// thread id for the call and another for the unbound SSL* (docs/performance.md, 2026-12-06).
BPF_TASK_STORAGE(ssl_calls, struct ssl_call);

static __always_inline struct ssl_call *ssl_call_of_thread(int create) {
    return ssl_calls.task_storage_get(bpf_get_current_task_btf(), 0, create ? BPF_LOCAL_STORAGE_GET_F_CREATE : 0);
}
BPF_TABLE("lru_hash", u64, u64, ssl_socks, 65536);  // SSL* -> sk (LRU: SSL objects are freed unseen)

#ifndef RW_NO_DNS_SEND
static __always_inline void dnsq_send(void *skp, int tcp);  // DNS queries, at the end
#endif

static __always_inline void on_io(u64 sk, u64 n, int out) {
    struct ssl_call *c = ssl_call_of_thread(0);  // most threads have none: one lookup, no hash
    if (c && out && c->unbound) {
        u64 ssl = c->unbound;
        ssl_socks.update(&ssl, &sk);
        c->unbound = 0;
    }
    struct sock_state *s = socks.lookup(&sk);
    if (s) {
        if (!s->owned) {
            read_task(&s->task);
            s->owned = 1;
            s->in_scope = task_in_scope();
        }
        if (out) {
            __sync_fetch_and_add(&s->app_sent, n);
#ifndef RW_NO_DNS_SEND
            if (s->dport == 53) dnsq_send((void *)sk, 1);  // DNS over TCP (a tracked connection)
#endif
        } else __sync_fetch_and_add(&s->app_recv, n);
    }
    if (c && c->ssl && c->sk != sk) {  // the socket I/O is the truth: SSL* addresses are reused after free
        c->sk = sk;
        ssl_socks.update(&c->ssl, &sk);
    }
}

// Raw tracepoints (sk, ret, flags): these fire for every send and receive on any socket of the
// host, so no perf record is filled per call; the protocol is read at its BTF offset.
static __always_inline int tcp_sock_io(void *skp) {
    u16 proto = 0;
    bpf_probe_read_kernel(&proto, sizeof(proto), skp + OFF_SK_PROTOCOL);
    return proto == RW_IPPROTO_TCP;
}

// Also where DNS queries are read (dnsq_send): every send of every socket passes here, in the
// sending process's context, so UDP sends are looked at without a syscall tracepoint.
RAW_TRACEPOINT_PROBE(sock_send_length) {
    int ret = (int)ctx->args[1];
    void *skp = (void *)ctx->args[0];
    u16 proto = 0;
    bpf_probe_read_kernel(&proto, sizeof(proto), skp + OFF_SK_PROTOCOL);
    if (proto == RW_IPPROTO_TCP) {
        if (ret > 0) on_io((u64)skp, ret, 1);
    }
#ifndef RW_NO_DNS_SEND
    else if (proto == RW_IPPROTO_UDP) dnsq_send(skp, 0);  // failed sends too: the query was made
#endif
    return 0;
}

RAW_TRACEPOINT_PROBE(sock_recv_length) {
    int ret = (int)ctx->args[1];
    if (ret <= 0 || ((int)ctx->args[2] & 2) || !tcp_sock_io((void *)ctx->args[0])) return 0;  // MSG_PEEK
    on_io(ctx->args[0], ret, 0);
    return 0;
}

// The socket tracepoints below are raw tracepoints too (arguments only, no perf record filled per
// hit): tcp_receive_reset(sk), tcp_send_reset(sk, skb, reason), tcp_destroy_sock(sk).
RAW_TRACEPOINT_PROBE(tcp_receive_reset) {
    u64 sk = ctx->args[0];
    struct sock_state *s = socks.lookup(&sk);
    if (s) s->rst |= 1;
    return 0;
}

// A reset sent for no socket (a SYN to a closed port) has sk NULL and is ignored.
RAW_TRACEPOINT_PROBE(tcp_send_reset) {
    u64 sk = ctx->args[0];
    if (!sk) return 0;
    struct sock_state *s = socks.lookup(&sk);
    if (s) s->rst |= (s->rst & 1) ? 2 : 6;
    return 0;
}

// The record's tuple is what the classic tracepoint reports (inet_sport, skc_dport, inet_saddr,
// skc_daddr, or the v6 rcv_saddr/daddr), read at BTF offsets. The classic tracepoint also calls
// sock_gen_cookie(); a raw tracepoint cannot. A socket tracked from its connect/accept keeps the id
// its entry got then (sock_state.cookie: so an open connection's exchanges can name their flow before
// it ends); any other gets the kernel's cookie when something already generated it (SO_COOKIE,
// sock_diag, BPF), else SYNTHETIC_UID of the destroy time.
// The record of a socket tracked from its connect/accept with its tuple known: the tuple, cookie and
// byte counts come from its entry (the tuple is fixed once connected, and is what the entry said while
// the socket was open), so only the segment counters are read from the socket.
static __always_inline int conn_record_tracked(void *ksk, struct sock_state *s) {
    u64 sk = (u64)ksk;
    struct conn_event *e = events.ringbuf_reserve(sizeof(struct conn_event));
    if (!e) {
        count(C_CONN_LOST);
        socks.delete(&sk);
        return 0;
    }
    e->type = T_CONN;
    e->family = s->family == RW_AF_INET6 ? 6 : 4;
    e->outbound = s->outbound;
    e->established = s->established;
    e->owned = s->owned;
    e->task = s->task;
    e->sk = sk;
    e->cookie = s->cookie;
    e->ts_first = s->ts_first;
    e->ts_established = s->ts_established;
    e->ts_end = bpf_ktime_get_ns();
    e->k_sent = 0;  // the application's counts are exact for a socket tracked from the start
    e->k_recv = 0;
    e->app_sent = s->app_sent;
    e->app_recv = s->app_recv;
    e->segs_out = 0;
    e->segs_in = 0;
    bpf_probe_read_kernel(&e->segs_out, 4, ksk + OFF_TCP_SEGS_OUT);
    bpf_probe_read_kernel(&e->segs_in, 4, ksk + OFF_TCP_SEGS_IN);
    e->sport = s->sport;
    e->dport = s->dport;
    e->last_state = TCP_CLOSE;  // a socket is destroyed only in CLOSE (see inet_sock_set_state)
    e->rst = s->rst;
    e->pad[0] = 0;
    e->pad[1] = 0;
    __builtin_memcpy(e->saddr, s->saddr, 16);
    __builtin_memcpy(e->daddr, s->daddr, 16);
    socks.delete(&sk);
    events.ringbuf_submit(e, BPF_RB_NO_WAKEUP);
    return 0;
}

RAW_TRACEPOINT_PROBE(tcp_destroy_sock) {
    void *ksk = (void *)ctx->args[0];
    u64 sk = (u64)ksk;
    if (!sk_in_scope(ksk)) return 0;
    struct sock_state *s = socks.lookup(&sk);
#ifdef SCOPE_CGROUP
    if (!s || !s->in_scope) {  // no owner seen in the cgroup: another "host's" socket
        if (s) socks.delete(&sk);
        return 0;
    }
#endif
    count(C_CONN_SEEN);
    if (s && s->sport && s->dport) return conn_record_tracked(ksk, s);
    u8 skc[SKC_SPAN];
    bpf_probe_read_kernel(skc, sizeof(skc), ksk + SKC_LO);
    u16 dport_be = get16(SKC(skc, OFF_SK_DPORT));
    if (dport_be == 0 && !(s && s->dport)) {  // a listener or a never-connected socket
        count(C_CONN_UNCONNECTED);
        if (s) socks.delete(&sk);
        return 0;
    }
    struct conn_event *e = events.ringbuf_reserve(sizeof(struct conn_event));
    if (!e) {
        count(C_CONN_LOST);
        if (s) socks.delete(&sk);
        return 0;
    }
    __builtin_memset(e, 0, sizeof(*e));
    u8 inet[INET_SPAN];
    bpf_probe_read_kernel(inet, sizeof(inet), ksk + INET_LO);
    u16 fam = get16(SKC(skc, OFF_SK_FAMILY));
    u64 cookie;
    __builtin_memcpy(&cookie, SKC(skc, OFF_SK_COOKIE), 8);
    e->type = T_CONN;
    e->family = fam == RW_AF_INET6 ? 6 : 4;
    e->sk = sk;
    e->ts_end = bpf_ktime_get_ns();
    e->cookie = s && s->cookie ? s->cookie : cookie ? cookie : SYNTHETIC_UID(e->ts_end);
    e->sport = __builtin_bswap16(get16(INET(inet, OFF_INET_SPORT)));
    e->dport = __builtin_bswap16(dport_be);
    if (fam == RW_AF_INET6) {
        __builtin_memcpy(e->saddr, SKC(skc, OFF_SK_V6_RCV_SADDR), 16);
        __builtin_memcpy(e->daddr, SKC(skc, OFF_SK_V6_DADDR), 16);
    } else {
        __builtin_memcpy(e->saddr, INET(inet, OFF_INET_SADDR), 4);
        __builtin_memcpy(e->daddr, SKC(skc, OFF_SK_DADDR), 4);
    }
    if (!s || !s->ts_first) {  // the kernel's byte counts matter only for sockets not tracked from the start
        u64 retrans = 0;
        bpf_probe_read_kernel(&e->k_sent, 8, ksk + OFF_TCP_BYTES_SENT);
        bpf_probe_read_kernel(&retrans, 8, ksk + OFF_TCP_BYTES_RETRANS);
        e->k_sent -= retrans;
        bpf_probe_read_kernel(&e->k_recv, 8, ksk + OFF_TCP_BYTES_RECEIVED);
    }
    bpf_probe_read_kernel(&e->segs_out, 4, ksk + OFF_TCP_SEGS_OUT);
    bpf_probe_read_kernel(&e->segs_in, 4, ksk + OFF_TCP_SEGS_IN);
    if (s) {
        e->task = s->task;
        e->outbound = s->outbound;
        e->established = s->established;
        e->owned = s->owned;
        e->ts_first = s->ts_first;
        e->ts_established = s->ts_established;
        e->last_state = TCP_CLOSE;
        e->rst = s->rst;
        e->app_sent = s->app_sent;
        e->app_recv = s->app_recv;
        if (dport_be == 0) {  // disconnected (refused/reset connect): the tuple it had
            e->family = s->family == RW_AF_INET6 ? 6 : 4;
            e->sport = s->sport;
            e->dport = s->dport;
            __builtin_memcpy(e->saddr, s->saddr, 16);
            __builtin_memcpy(e->daddr, s->daddr, 16);
        }
        socks.delete(&sk);
    }
    events.ringbuf_submit(e, BPF_RB_NO_WAKEUP);
    return 0;
}

// -- processes ----------------------------------------------------------------------------------
struct exec_event {
    u32 type;
    u32 args_len;
    struct task_info task;
    u64 ts;
    char filename[FNAME_LEN];
    char args[ARGS_LEN];
};
struct exit_event {
    u32 type;
    u32 tgid;
    u64 start_ns;
    u64 ts;
};

TRACEPOINT_PROBE(sched, sched_process_exec) {
    if (!task_in_scope()) return 0;
    count(C_EXEC_SEEN);
    struct exec_event *e = events.ringbuf_reserve(sizeof(struct exec_event));
    if (!e) { count(C_EXEC_LOST); return 0; }
    read_task(&e->task);
    e->type = T_EXEC;
    e->ts = bpf_ktime_get_ns();
    TP_DATA_LOC_READ_STR(e->filename, filename, FNAME_LEN);
    void *task = (void *)bpf_get_current_task();
    void *mm = 0;
    u64 a0 = 0, a1 = 0;
    bpf_probe_read_kernel(&mm, sizeof(mm), task + OFF_TASK_MM);
    if (mm) {
        bpf_probe_read_kernel(&a0, 8, mm + OFF_MM_ARG_START);
        bpf_probe_read_kernel(&a1, 8, mm + OFF_MM_ARG_END);
    }
    u64 n = a1 > a0 ? a1 - a0 : 0;
    if (n > ARGS_LEN) n = ARGS_LEN;
    e->args_len = n;
    if (n > 0 && bpf_probe_read_user(e->args, n & 0x1ff, (void *)a0) != 0) e->args_len = 0;
    events.ringbuf_submit(e, BPF_RB_NO_WAKEUP);
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_exit) {
    u64 pid_tgid = bpf_get_current_pid_tgid();
    if ((u32)pid_tgid != (pid_tgid >> 32)) return 0;  // threads: only the group leader's exit
    if (!task_in_scope()) return 0;
    struct exit_event *e = events.ringbuf_reserve(sizeof(struct exit_event));
    if (!e) { count(C_EXIT_LOST); return 0; }
    struct task_info t = {};
    read_task(&t);
    e->type = T_EXIT;
    e->tgid = t.tgid;
    e->start_ns = t.start_ns;
    e->ts = bpf_ktime_get_ns();
    events.ringbuf_submit(e, BPF_RB_NO_WAKEUP);
    return 0;
}

// -- DNS through libc getaddrinfo ----------------------------------------------------------------
struct gai_call {
    u64 node;
    u64 res;
};
BPF_HASH(gai_calls, u64, struct gai_call, 4096);

struct dns_addr {
    u16 family;
    u8 addr[16];
};
struct dns_event {
    u32 type;
    s32 ret;
    struct task_info task;
    u64 ts;
    u32 naddrs;
    u32 pad;
    char name[DNS_NAME_LEN];
    struct dns_addr addrs[DNS_MAX_ADDRS];
};

int gai_enter(struct pt_regs *ctx) {
    u64 tid = bpf_get_current_pid_tgid();
    struct gai_call c = {PT_REGS_PARM1(ctx), PT_REGS_PARM4(ctx)};
    gai_calls.update(&tid, &c);
    return 0;
}

int gai_return(struct pt_regs *ctx) {
    u64 tid = bpf_get_current_pid_tgid();
    struct gai_call *c = gai_calls.lookup(&tid);
    if (!c) return 0;
    struct gai_call call = *c;
    gai_calls.delete(&tid);
    if (!task_in_scope()) return 0;
    count(C_DNS_SEEN);
    struct dns_event *e = events.ringbuf_reserve(sizeof(struct dns_event));
    if (!e) { count(C_DNS_LOST); return 0; }
    __builtin_memset(e, 0, sizeof(*e));
    e->type = T_DNS;
    e->ret = PT_REGS_RC(ctx);
    e->ts = bpf_ktime_get_ns();
    read_task(&e->task);
    bpf_probe_read_user_str(e->name, DNS_NAME_LEN, (void *)call.node);
    u64 ai = 0;
    if (e->ret == 0) bpf_probe_read_user(&ai, 8, (void *)call.res);
    u32 n = 0;
    // struct addrinfo (glibc, LP64): family @4, ai_addr @24, ai_next @40
    for (int i = 0; i < DNS_MAX_ADDRS; i++) {
        if (!ai) break;
        u64 sa = 0;
        u16 fam = 0;
        bpf_probe_read_user(&sa, 8, (void *)(ai + 24));
        if (sa) bpf_probe_read_user(&fam, 2, (void *)sa);
        if (fam == RW_AF_INET) {
            e->addrs[i].family = 4;
            bpf_probe_read_user(e->addrs[i].addr, 4, (void *)(sa + 4));
            n++;
        } else if (fam == RW_AF_INET6) {
            e->addrs[i].family = 6;
            bpf_probe_read_user(e->addrs[i].addr, 16, (void *)(sa + 8));
            n++;
        }
        bpf_probe_read_user(&ai, 8, (void *)(ai + 40));
    }
    e->naddrs = n;
    events.ringbuf_submit(e, BPF_RB_NO_WAKEUP);
    return 0;
}

// -- libssl plaintext ---------------------------------------------------------------------------
struct ssl_head {
    u32 type;
    u32 len;          // bytes in this chunk
    u64 ssl;
    u64 sk;           // socket the call went through (0 if the call hit no socket I/O)
    u64 ts;
    u32 tgid;
    u32 total;        // bytes the call returned
    u32 offset;       // offset of this chunk in the call
    u8 dir;           // 0 SSL_write, 1 SSL_read
    u8 truncated;     // the call returned more than SSL_MAX_CHUNKS * SSL_CHUNK
    u8 pad[2];
};
struct ssl_event {
    struct ssl_head h;
    u8 data[SSL_CHUNK];
};
struct ssl_scratch_t {
    struct ssl_event e;
    u8 slack[SSL_CHUNK * 2];  // lets the verifier accept sizes masked to 0x1fff
};
BPF_PERCPU_ARRAY(ssl_scratch, struct ssl_scratch_t, 1);

static __always_inline int ssl_enter(struct pt_regs *ctx, u8 dir, u8 ex) {
    struct ssl_call *c = ssl_call_of_thread(1);
    if (!c) return 0;
    c->ssl = PT_REGS_PARM1(ctx);
    c->buf = PT_REGS_PARM2(ctx);
    c->num = PT_REGS_PARM3(ctx);
    c->len_ptr = ex ? PT_REGS_PARM4(ctx) : 0;
    c->dir = dir;
    u64 *known = ssl_socks.lookup(&c->ssl);
    c->sk = known ? *known : 0;
    return 0;
}

static __always_inline void ssl_head_fill(struct ssl_head *h, u64 ssl, u64 sk, u64 total, u8 dir, u64 tid) {
    h->type = T_SSL;
    h->ssl = ssl;
    h->sk = sk;
    h->ts = bpf_ktime_get_ns();
    h->tgid = tid >> 32;
    h->total = total;
    h->dir = dir;
    h->truncated = total > (u64)SSL_MAX_CHUNKS * SSL_CHUNK;
}

// A call of at most one chunk (a keep-alive client's request headers and body, a response) is read
// straight from user memory into a ring record of the smallest size class that holds it: one copy,
// where the per-CPU scratch below costs two (probe_read into the scratch, ringbuf_output's memcpy).
// The record is up to twice the bytes it carries (the reader takes `len` bytes; the rest is whatever
// the ring held). The reserve size must be a constant, hence one branch per class.
static __always_inline int ssl_emit_small(u64 ssl, u64 sk, u64 buf, u64 total, u8 dir, u64 tid) {
    struct ssl_event *e;
    const u32 head = sizeof(struct ssl_head);
    if (total > SSL_CHUNK) return 0;
    if (total <= 128) e = events.ringbuf_reserve(head + 128);
    else if (total <= 256) e = events.ringbuf_reserve(head + 256);
    else if (total <= 512) e = events.ringbuf_reserve(head + 512);
    else if (total <= 1024) e = events.ringbuf_reserve(head + 1024);
    else if (total <= 2048) e = events.ringbuf_reserve(head + 2048);
    else e = events.ringbuf_reserve(head + SSL_CHUNK);
    if (!e) { count(C_SSL_LOST); return 1; }
    if (bpf_probe_read_user(e->data, total, (void *)buf) != 0) {
        events.ringbuf_discard(e, BPF_RB_NO_WAKEUP);
        return 1;
    }
    ssl_head_fill(&e->h, ssl, sk, total, dir, tid);
    e->h.len = total;
    e->h.offset = 0;
    e->h.pad[0] = 0;
    e->h.pad[1] = 0;
    events.ringbuf_submit(e, BPF_RB_NO_WAKEUP);
    return 1;
}

// one plaintext call -> T_SSL records of at most SSL_CHUNK bytes (libssl and Go crypto/tls alike)
static __always_inline void ssl_emit(u64 ssl, u64 sk, u64 buf, u64 total, u8 dir, u64 tid) {
    if (!task_in_scope()) return;
    count(C_SSL_SEEN);
    if (ssl_emit_small(ssl, sk, buf, total, dir, tid)) return;
    u32 zero = 0;
    struct ssl_scratch_t *scratch = ssl_scratch.lookup(&zero);
    if (!scratch) return;
    struct ssl_event *e = &scratch->e;
    ssl_head_fill(&e->h, ssl, sk, total, dir, tid);
    if (e->h.truncated) count(C_SSL_TRUNC);
    for (int i = 0; i < SSL_MAX_CHUNKS; i++) {
        u64 off = (u64)i * SSL_CHUNK;
        if (off >= total) break;
        u64 n = total - off;
        if (n > SSL_CHUNK) n = SSL_CHUNK;
        e->h.offset = off;
        e->h.len = n;
        if (bpf_probe_read_user(e->data, n & 0x1fff, (void *)(buf + off)) != 0) break;
        u64 size = (offsetof(struct ssl_event, data) + n) & 0x1fff;
        if (events.ringbuf_output(e, size, BPF_RB_NO_WAKEUP) != 0) { count(C_SSL_LOST); break; }
    }
}

static __always_inline int ssl_return(struct pt_regs *ctx) {
    struct ssl_call *cp = ssl_call_of_thread(0);
    if (!cp || !cp->ssl) return 0;
    struct ssl_call c = *cp;
    cp->ssl = 0;
    u64 tid = bpf_get_current_pid_tgid();
    s64 rc = (int)PT_REGS_RC(ctx);
    u64 total = 0;
    if (c.len_ptr) {
        if (rc != 1) return 0;
        bpf_probe_read_user(&total, 8, (void *)c.len_ptr);
    } else {
        if (rc <= 0) return 0;
        total = rc;
    }
    if (total == 0) return 0;
    if (!c.sk) {
        u64 *known = ssl_socks.lookup(&c.ssl);
        if (known) c.sk = *known;
        else if (c.dir == 0) cp->unbound = c.ssl;
    }
    ssl_emit(c.ssl, c.sk, c.buf, total, c.dir, tid);
    return 0;
}

int ssl_write_enter(struct pt_regs *ctx) { return ssl_enter(ctx, 0, 0); }
int ssl_write_ex_enter(struct pt_regs *ctx) { return ssl_enter(ctx, 0, 1); }
int ssl_read_enter(struct pt_regs *ctx) { return ssl_enter(ctx, 1, 0); }
int ssl_read_ex_enter(struct pt_regs *ctx) { return ssl_enter(ctx, 1, 1); }
int ssl_return_probe(struct pt_regs *ctx) { return ssl_return(ctx); }

// -- Go crypto/tls plaintext (amd64 register ABI, Go >= 1.17) ------------------------------------
// Uprobes on crypto/tls.(*Conn).Write and Read entries and on every RET instruction inside them
// (collector/ebpf/go_tls.py finds those by disassembly). No uretprobes: Go copies goroutine stacks
// when they grow, and a return address hijacked by a uretprobe breaks the program. Entry: RAX =
// *Conn, RBX = buf, RCX = len; at a RET: RAX = n. A call is keyed by (tgid, goroutine) since R14
// holds g and a goroutine blocked in Read may resume on another thread. The conn is tied to the
// socket its thread writes next after Write's entry (ssl_call.unbound, as for memory-BIO libssl stacks),
// under a key mixed with the tgid: Go heaps start at the same address in every process.
struct go_key {
    u64 g;
    u64 tgid;
};
struct go_call {
    u64 conn;
    u64 buf;
    u64 len;
    u64 dir;
};
BPF_TABLE("lru_hash", struct go_key, struct go_call, go_calls, 16384);  // LRU: a panic skips the RET

static __always_inline u64 go_conn_key(u64 conn, u64 tgid) { return conn ^ (tgid * 0x9E3779B97F4A7C15ULL); }

static __always_inline int go_enter(struct pt_regs *ctx, u8 dir) {
    u64 tid = bpf_get_current_pid_tgid();
    struct go_key k = {ctx->r14, tid >> 32};
    struct go_call c = {ctx->ax, ctx->bx, ctx->cx, dir};
    go_calls.update(&k, &c);
    if (dir == 0) {
        struct ssl_call *t = ssl_call_of_thread(1);
        if (t) t->unbound = go_conn_key(c.conn, tid >> 32);
    }
    return 0;
}

int go_tls_write_enter(struct pt_regs *ctx) { return go_enter(ctx, 0); }
int go_tls_read_enter(struct pt_regs *ctx) { return go_enter(ctx, 1); }

int go_tls_return(struct pt_regs *ctx) {
    u64 tid = bpf_get_current_pid_tgid();
    struct go_key k = {ctx->r14, tid >> 32};
    struct go_call *cp = go_calls.lookup(&k);
    if (!cp) return 0;
    struct go_call c = *cp;
    go_calls.delete(&k);
    u64 key = go_conn_key(c.conn, tid >> 32);
    if (c.dir == 0) {  // a Write that made no socket I/O must not tie a later, unrelated write
        struct ssl_call *t = ssl_call_of_thread(0);
        if (t && t->unbound == key) t->unbound = 0;
    }
    s64 n = (s64)ctx->ax;
    if (n <= 0) return 0;
    if ((u64)n > c.len) n = c.len;
    u64 sk = 0;
    u64 *known = ssl_socks.lookup(&key);
    if (known) sk = *known;
    ssl_emit(c.conn, sk, c.buf, n, c.dir, tid);
    return 0;
}

// -- DNS queries at the socket send (resolvers of their own: dig, Go, c-ares, raw sockets) ----------
// sock:sock_send_length (already attached for the TCP byte counts) fires after every socket send, in
// the sending process's context, while the syscall's user arguments are still where the process
// left them: the registers saved at syscall entry (bpf_task_pt_regs) give the syscall and its
// arguments, and the destination and payload are read from user memory, never from kernel structs
// beyond the socket's own connected peer. This replaced five syscall tracepoints (sendto, sendmsg,
// sendmmsg, connect, close): while any syscall tracepoint is attached, every syscall on the host
// takes the kernel's tracing entry path, which cost the connect storm ~3% (docs/performance.md);
// here only UDP sends (and sends on a tracked TCP connection to port 53) do any work.
// The destination: the address the process passed (sendto, sendmsg's msg_name), else the socket's
// connected peer. Sends reach here through write/send/sendto/sendmsg/sendmmsg; io_uring and
// 32-bit (compat) sends do not carry these syscall numbers and are not read.
#define DNSQ_LEN 512
#define DNSQ_MMSG 4          // messages read per sendmmsg (glibc sends A + AAAA as 2)
#define NR_WRITE 1           // x86_64 syscall numbers
#define NR_SENDTO 44
#define NR_SENDMSG 46
#define NR_SENDMMSG 307
struct dns_dest {
    u16 family;
    u16 port;
    u8 addr[16];
};

struct dnsq_event {
    u32 type;
    u32 len;
    struct task_info task;
    u64 ts;
    u16 family;
    u16 dport;
    u32 pad;
    u8 daddr[16];
    u8 data[DNSQ_LEN];
};

static __always_inline int read_dns_dest(const void *uaddr, struct dns_dest *d) {
    u32 head = 0;  // sa_family and the port (network order) in one read
    if (!uaddr || bpf_probe_read_user(&head, 4, uaddr)) return 0;
    u16 fam = head & 0xffff, port = __builtin_bswap16(head >> 16);
    if (fam != RW_AF_INET && fam != RW_AF_INET6) return 0;
    if (port != 53) return 0;
    d->port = port;
    if (fam == RW_AF_INET) {
        d->family = 4;
        bpf_probe_read_user(d->addr, 4, uaddr + 4);
    } else {
        d->family = 6;
        bpf_probe_read_user(d->addr, 16, uaddr + 8);
    }
    return 1;
}

// the socket's connected peer when it is port 53 (the port read first: most sends stop there)
static __always_inline int sk_dns_dest(void *skp, struct dns_dest *d) {
    u16 dport_be = 0;
    bpf_probe_read_kernel(&dport_be, sizeof(dport_be), skp + OFF_SK_DPORT);
    if (__builtin_bswap16(dport_be) != 53) return 0;
    u16 fam = 0;
    bpf_probe_read_kernel(&fam, sizeof(fam), skp + OFF_SK_FAMILY);
    d->port = 53;
    if (fam == RW_AF_INET6) {
        d->family = 6;
        bpf_probe_read_kernel(d->addr, 16, skp + OFF_SK_V6_DADDR);
    } else {
        d->family = 4;
        bpf_probe_read_kernel(d->addr, 4, skp + OFF_SK_DADDR);
    }
    return 1;
}

// destination of a send: the address passed in, else the port-53 peer the socket is connected to
static __always_inline int send_dest(void *skp, const void *uaddr, struct dns_dest *d) {
    if (uaddr) return read_dns_dest(uaddr, d);
    return sk_dns_dest(skp, d);
}

// built in a per-CPU scratch and output with only the query's bytes (a typical query is ~40 bytes of
// 512): the ring buffer holds ~5x more queries and the reader copies ~5x less; the reader zero-pads
struct dnsq_scratch_t {
    struct dnsq_event e;
    u8 slack[1024 - sizeof(struct dnsq_event)];  // lets the verifier accept sizes masked to 0x3ff
};
BPF_PERCPU_ARRAY(dnsq_scratch, struct dnsq_scratch_t, 1);

static __always_inline void emit_dnsq(const struct dns_dest *d, const void *buf, u64 len) {
    if (!task_in_scope()) return;
    count(C_DNSQ_SEEN);
    u32 zero = 0;
    struct dnsq_scratch_t *scratch = dnsq_scratch.lookup(&zero);
    if (!scratch) return;
    struct dnsq_event *e = &scratch->e;
    __builtin_memset(e, 0, offsetof(struct dnsq_event, data));
    e->type = T_DNSQ;
    e->ts = bpf_ktime_get_ns();
    read_task(&e->task);
    e->family = d->family;
    e->dport = d->port;
    __builtin_memcpy(e->daddr, d->addr, 16);
    u32 n = len > DNSQ_LEN ? DNSQ_LEN : (u32)len;
    if (n > 0 && n <= DNSQ_LEN && bpf_probe_read_user(e->data, n, buf) == 0) e->len = n;
    u64 size = (offsetof(struct dnsq_event, data) + e->len) & 0x3ff;
    if (events.ringbuf_output(e, size, BPF_RB_NO_WAKEUP) != 0) count(C_DNSQ_LOST);
}

// struct user_msghdr (LP64): msg_name @0, msg_iov @16, msg_iovlen @24; struct iovec: base @0, len @8
static __always_inline void dnsq_msghdr(void *skp, const void *msg) {
    u64 name = 0, iov = 0, iovlen = 0, base = 0, len = 0;
    if (bpf_probe_read_user(&name, 8, msg)) return;
    struct dns_dest d = {};
    if (!send_dest(skp, (const void *)name, &d)) return;
    bpf_probe_read_user(&iov, 8, msg + 16);
    bpf_probe_read_user(&iovlen, 8, msg + 24);
    if (iov && iovlen) {
        bpf_probe_read_user(&base, 8, (void *)iov);
        bpf_probe_read_user(&len, 8, (void *)(iov + 8));
    }
    emit_dnsq(&d, (const void *)base, len);
}

#ifndef RW_NO_DNS_SEND
// sendmmsg sends its messages one sock_sendmsg each, so this fires once per message: which one is
// counted per thread (the vector's address and the next index). A call that failed part-way leaves
// a stale position; the thread's next sendmmsg of the same vector then reads its messages in a
// rotated order (each query still read once, from that call's own buffers).
struct mmsg_pos {
    u64 vec;
    u32 next;
    u32 vlen;
};
BPF_HASH(dnsq_mmsg, u64, struct mmsg_pos, 4096);

static __always_inline void dnsq_send(void *skp, int tcp) {
    struct task_struct *task = bpf_get_current_task_btf();
    struct pt_regs *uregs = (struct pt_regs *)bpf_task_pt_regs(task);
    struct pt_regs r = {};
    if (!uregs || bpf_probe_read_kernel(&r, sizeof(r), uregs)) return;
    struct dns_dest d = {};
    if (r.orig_ax == NR_SENDTO || r.orig_ax == NR_WRITE) {  // (fd, buf, len[, flags, addr]): send() is sendto
        const void *addr = r.orig_ax == NR_SENDTO && !tcp ? (const void *)r.r8 : 0;
        if (send_dest(skp, addr, &d)) emit_dnsq(&d, (const void *)r.si, r.dx);
    } else if (r.orig_ax == NR_SENDMSG) {
        dnsq_msghdr(skp, (const void *)r.si);
    } else if (r.orig_ax == NR_SENDMMSG) {  // struct mmsghdr: a user_msghdr (56 bytes) + msg_len, 64 bytes each
        u64 tid = bpf_get_current_pid_tgid();
        struct mmsg_pos *p = dnsq_mmsg.lookup(&tid);
        u32 i = p && p->vec == r.si && p->next < p->vlen ? p->next : 0;
        u32 vlen = r.dx;
        if (i + 1 < vlen) {
            struct mmsg_pos np = {r.si, i + 1, vlen};
            dnsq_mmsg.update(&tid, &np);
        } else if (p) {
            dnsq_mmsg.delete(&tid);
        }
        if (i < DNSQ_MMSG) dnsq_msghdr(skp, (const void *)(r.si + 64 * (u64)i));
    }
}
#endif  // RW_NO_DNS_SEND
