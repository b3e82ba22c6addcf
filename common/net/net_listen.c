/* net_listen — resolve, bind, listen, accept; see net_listen.h. */
#include "net_listen.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netdb.h>
#include <unistd.h>

#include "st_err.h"

int net_resolve(const char *host, int port, struct sockaddr_storage *out)
{
    memset(out, 0, sizeof *out);
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)out) == 0)
        return 0;
    if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)out) == 0)
        return 0;
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    if (getaddrinfo(host, NULL, &hints, &res) != 0 || !res)
        return ST_EINVAL;
    int rc = ST_EINVAL;
    if (res->ai_addrlen <= sizeof *out &&
        (res->ai_family == AF_INET || res->ai_family == AF_INET6)) {
        memcpy(out, res->ai_addr, res->ai_addrlen);
        if (out->ss_family == AF_INET)
            ((struct sockaddr_in *)out)->sin_port = htons((uint16_t)port);
        else
            ((struct sockaddr_in6 *)out)->sin6_port = htons((uint16_t)port);
        rc = 0;
    }
    freeaddrinfo(res);
    return rc;
}

int net_listen_tcp(uv_tcp_t *tcp, const struct sockaddr_storage *addr, uv_connection_cb on_conn,
                   int *port)
{
    int rc = uv_tcp_bind(tcp, (const struct sockaddr *)addr, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)tcp, 511, on_conn);
    struct sockaddr_storage bound;
    int blen = sizeof bound;
    if (rc == 0)
        rc = uv_tcp_getsockname(tcp, (struct sockaddr *)&bound, &blen);
    if (rc == 0)
        *port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                  : ((struct sockaddr_in *)&bound)->sin_port);
    return rc;
}

int net_addr_name(const struct sockaddr_storage *ss, char *out, size_t cap)
{
    char ip[INET6_ADDRSTRLEN] = "";
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        uv_ip4_name(a, ip, sizeof ip);
        snprintf(out, cap, "%s:%u", ip, (unsigned)ntohs(a->sin_port));
        return 0;
    }
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        uv_ip6_name(a, ip, sizeof ip);
        snprintf(out, cap, "[%s]:%u", ip, (unsigned)ntohs(a->sin6_port));
        return 0;
    }
    if (cap)
        out[0] = 0;
    return -1;
}

int net_accept(uv_stream_t *ls, uv_tcp_t *tcp, char *peer, size_t cap)
{
    int rc = uv_accept(ls, (uv_stream_t *)tcp);
    if (rc != 0)
        return rc;
    uv_tcp_nodelay(tcp, 1);
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (uv_tcp_getpeername(tcp, (struct sockaddr *)&ss, &len) != 0)
        peer[0] = 0;
    else
        net_addr_name(&ss, peer, cap);
    return 0;
}

int net_conn_handles_init(uv_loop_t *loop, uv_tcp_t *tcp, uv_timer_t *timer, void *conn)
{
    uv_tcp_init(loop, tcp);
    uv_timer_init(loop, timer);
    tcp->data = conn;
    timer->data = conn;
    return 2;
}

void net_thread_pool_size(long per_cpu, long min)
{
    if (getenv("UV_THREADPOOL_SIZE"))
        return;
    long n = sysconf(_SC_NPROCESSORS_ONLN) * per_cpu;
    char tp[32];
    snprintf(tp, sizeof tp, "%ld", n < min ? min : n);
    setenv("UV_THREADPOOL_SIZE", tp, 1);
}
