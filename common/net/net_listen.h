/*
 * net_listen — the listening socket both servers need (http.c for HTTP,
 * rpc_uv.c for RPC): resolve the host once, blocking, at startup; bind a
 * libuv TCP handle to it; listen with a backlog of 511; read back the port
 * (so port 0, "any free port", can be reported); accept a connection (no
 * Nagle delay) and name its peer ("1.2.3.4:5678", "[::1]:5678").
 *
 * Also the libuv thread pool's size, which both daemons set before their
 * loop starts.
 *
 * Errors come back as libuv codes (UV_EADDRINUSE, ...) so each server keeps
 * its own mapping to ST_E* codes. Closing the handle stays the caller's.
 */
#ifndef NET_LISTEN_H
#define NET_LISTEN_H

#include <sys/socket.h>

#include <uv.h>

/*
 * host:port as a socket address: numeric IPv4 or IPv6 first, else the first
 * getaddrinfo() answer (blocking; AI_PASSIVE, TCP). host must be non-NULL.
 * Returns 0 or ST_EINVAL (host does not resolve).
 */
int net_resolve(const char *host, int port, struct sockaddr_storage *out);
/*
 * Bind tcp (initialised with uv_tcp_init) to addr and listen (backlog 511)
 * with on_conn; on success *port is the bound port. Returns 0 or the libuv
 * error of the first step that failed.
 */
int net_listen_tcp(uv_tcp_t *tcp, const struct sockaddr_storage *addr, uv_connection_cb on_conn,
                   int *port);
/*
 * Accept the pending connection of listener ls into tcp (initialised with
 * uv_tcp_init), turn Nagle off and write the peer's "ip:port" into peer
 * ("" when it cannot be read). Returns 0 or uv_accept's libuv error.
 */
int net_accept(uv_stream_t *ls, uv_tcp_t *tcp, char *peer, size_t cap);
/* "ip:port" (IPv4) or "[ip]:port" (IPv6) of ss into out; 0, or -1 and ""
 * for another address family. */
int net_addr_name(const struct sockaddr_storage *ss, char *out, size_t cap);

/*
 * A server connection's two handles, its socket and its timer, initialised
 * on loop with data = conn. Returns 2, the number of handles the
 * connection must see closed before it is freed.
 */
int net_conn_handles_init(uv_loop_t *loop, uv_tcp_t *tcp, uv_timer_t *timer, void *conn);

/*
 * Unless UV_THREADPOOL_SIZE is set, size libuv's thread pool to per_cpu
 * threads per online CPU, at least min. Call before the first uv_queue_work.
 */
void net_thread_pool_size(long per_cpu, long min);

#endif
