/*
 * Unit tests for net_listen: resolving listen addresses (numeric IPv4 and
 * IPv6, a name, a bad name) and binding a libuv listener on 127.0.0.1 (port
 * 0 reports the port picked; a second bind to it fails with
 * UV_EADDRINUSE), and naming addresses "ip:port" / "[ip]:port" (accepting
 * real connections is covered by unit_http and unit_rpc_uv). Each loop test
 * ends with uv_loop_close() == 0.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>

#include "net_listen.h"
#include "st_err.h"

static void test_resolve(void **state)
{
    (void)state;
    struct sockaddr_storage ss;
    assert_int_equal(net_resolve("127.0.0.1", 8086, &ss), 0);
    assert_int_equal(ss.ss_family, AF_INET);
    assert_int_equal(ntohs(((struct sockaddr_in *)&ss)->sin_port), 8086);
    assert_int_equal(net_resolve("::1", 9000, &ss), 0);
    assert_int_equal(ss.ss_family, AF_INET6);
    assert_int_equal(ntohs(((struct sockaddr_in6 *)&ss)->sin6_port), 9000);
    assert_int_equal(net_resolve("localhost", 7000, &ss), 0);
    assert_true(ss.ss_family == AF_INET || ss.ss_family == AF_INET6);
    assert_int_equal(net_resolve("no such host.invalid", 1, &ss), ST_EINVAL);
}

static void test_addr_name(void **state)
{
    (void)state;
    struct sockaddr_storage ss;
    char out[80];
    assert_int_equal(net_resolve("10.1.2.3", 8086, &ss), 0);
    assert_int_equal(net_addr_name(&ss, out, sizeof out), 0);
    assert_string_equal(out, "10.1.2.3:8086");
    assert_int_equal(net_resolve("::1", 7401, &ss), 0);
    assert_int_equal(net_addr_name(&ss, out, sizeof out), 0);
    assert_string_equal(out, "[::1]:7401");
    memset(&ss, 0, sizeof ss);
    ss.ss_family = AF_UNIX;
    assert_int_equal(net_addr_name(&ss, out, sizeof out), -1);
    assert_string_equal(out, "");
}

static void on_conn(uv_stream_t *s, int status)
{
    (void)s;
    (void)status;
}

static void test_listen(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct sockaddr_storage ss;
    assert_int_equal(net_resolve("127.0.0.1", 0, &ss), 0);
    uv_tcp_t a, b;
    uv_tcp_init(&loop, &a);
    uv_tcp_init(&loop, &b);
    int port = -1, port2 = -1;
    assert_int_equal(net_listen_tcp(&a, &ss, on_conn, &port), 0);
    assert_true(port > 0 && port < 65536);
    assert_int_equal(net_resolve("127.0.0.1", port, &ss), 0);
    assert_int_equal(net_listen_tcp(&b, &ss, on_conn, &port2), UV_EADDRINUSE);
    assert_int_equal(port2, -1);
    uv_close((uv_handle_t *)&a, NULL);
    uv_close((uv_handle_t *)&b, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resolve),
        cmocka_unit_test(test_addr_name),
        cmocka_unit_test(test_listen),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
