/* http_client.c -- see http_client.h. */
#include "http_client.h"
#include "proc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int gt_free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  int port = -1;
  if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
      getsockname(fd, (struct sockaddr *)&a, &len) == 0)
    port = ntohs(a.sin_port);
  close(fd);
  return port;
}

int gt_http(int port, const char *method, const char *path, const char *extra_headers,
            char *body, size_t size) {
  body[0] = '\0';
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
    close(fd);
    return -1;
  }
  char req[2048];
  int n = snprintf(req, sizeof(req), "%s %s HTTP/1.0\r\nHost: 127.0.0.1:%d\r\n%s\r\n", method, path,
                   port, extra_headers ? extra_headers : "");
  if (n < 0 || (size_t)n >= sizeof(req) || write(fd, req, (size_t)n) != n) {
    close(fd);
    return -1;
  }
  size_t cap = 1 << 16, len = 0;
  char *buf = malloc(cap);
  int64_t deadline = gt_mono_ms() + gt_scaled_ms(10000);
  for (;;) {
    int64_t left = deadline - gt_mono_ms();
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (!buf || left <= 0 || poll(&p, 1, (int)left) <= 0) {
      len = 0;
      break;
    }
    if (len + 4096 > cap) {
      char *b2 = realloc(buf, cap * 2);
      if (!b2) break;
      buf = b2;
      cap *= 2;
    }
    ssize_t r = read(fd, buf + len, cap - len - 1);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    len += (size_t)r;
  }
  close(fd);
  int status = -1;
  if (buf && len) {
    buf[len] = '\0';
    char *sep = strstr(buf, "\r\n\r\n");
    if (sep && sscanf(buf, "HTTP/%*s %d", &status) == 1) {
      snprintf(body, size, "%s", sep + 4);
    } else {
      status = -1;
    }
  }
  free(buf);
  return status;
}
