/* http_client.h -- a minimal HTTP/1.0 client for the tests of gtask's HTTP
 * endpoints (issue 20: /metrics, the Prometheus API): one request on a fresh
 * loopback connection, the whole response read until the server closes.
 *
 *     char body[65536];
 *     int status = gt_http(port, "GET", "/metrics", NULL, body, sizeof(body));
 *
 * Returns the status code (200, 404...), or -1 if the request failed (no
 * listener, timeout after gt_scaled_ms(10000), a malformed response); body
 * gets the response body, NUL-terminated and cut to size - 1 bytes.
 * gt_free_port() returns a loopback TCP port that was free a moment ago (for
 * a server that must be told its port, such as prometheus). */
#ifndef GTASK_TEST_HTTP_CLIENT_H
#define GTASK_TEST_HTTP_CLIENT_H

#include <stddef.h>

int gt_http(int port, const char *method, const char *path, const char *extra_headers,
            char *body, size_t size);
int gt_free_port(void);

#endif /* GTASK_TEST_HTTP_CLIENT_H */
