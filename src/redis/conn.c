/* redis/conn.c -- gtask's own Redis connections (see conn.h): connect, write
 * and read, plain or through OpenSSL.
 *
 * Connecting is non-blocking, every wait a poll(2) against the connect
 * deadline (the TLS handshake included).  Then the socket turns blocking with
 * SO_SNDTIMEO/SO_RCVTIMEO set to the command timeout, as hiredis does: a
 * command is one send and one recv when its reply comes in one piece -- a
 * non-blocking socket would add a poll and a recv that finds nothing to each
 * (two more system calls on every round trip of the latency path).  The
 * timeout thus bounds each wait for the server, not the command as a whole.
 * Plain writes use send(MSG_NOSIGNAL); OpenSSL writes with write(2), which
 * the library's SIGPIPE guard covers (internal.h). */
#include "conn.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>
#include <arpa/inet.h>

#define READ_CHUNK 16384

static void set_err(gtask__conn *c, int type, const char *fmt, ...) GTASK__PRINTF(3, 4);
static void set_err(gtask__conn *c, int type, const char *fmt, ...) {
  if (c->err) return; /* the first cause is the one to tell */
  c->err = type;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c->errstr, sizeof(c->errstr), fmt, ap);
  va_end(ap);
}

/* The socket's send and receive timeouts: ms (0: none). */
static void apply_timeout(int fd, int64_t ms) {
  struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

/* The OpenSSL error queue's last entry (and clears the queue). */
static void ssl_reason(char *buf, size_t size) {
  unsigned long e, last = 0;
  while ((e = ERR_get_error()) != 0) last = e;
  if (last)
    ERR_error_string_n(last, buf, size);
  else
    gtask__fmt(buf, size, "%s", errno ? strerror(errno) : "TLS error");
}

static int64_t deadline_of(int64_t timeout_ms) {
  return timeout_ms > 0 ? gtask__mono_ms() + timeout_ms : 0;
}

/* Waits until fd is ready for events or the deadline (0: none) passes.
 * 1 ready, 0 timed out, -1 error (errno). */
static int wait_fd(int fd, short events, int64_t deadline) {
  for (;;) {
    int ms = -1;
    if (deadline) {
      int64_t left = deadline - gtask__mono_ms();
      if (left <= 0) return 0;
      ms = left > 1000000 ? 1000000 : (int)left;
    }
    struct pollfd p = {.fd = fd, .events = events};
    int n = poll(&p, 1, ms);
    if (n > 0) return 1;
    if (n == 0) {
      if (deadline) continue; /* re-check the deadline */
      return 0;
    }
    if (errno != EINTR) return -1;
  }
}

/* ---------------------------------------------------------------- connect */

static int connect_fd(int fd, const struct sockaddr *sa, socklen_t len, int64_t deadline,
                      char *errbuf, size_t errlen) {
  if (connect(fd, sa, len) == 0) return 0;
  if (errno != EINPROGRESS && errno != EAGAIN) {
    gtask__fmt(errbuf, errlen, "%s", strerror(errno));
    return -1;
  }
  int w = wait_fd(fd, POLLOUT, deadline);
  if (w <= 0) {
    gtask__fmt(errbuf, errlen, "%s", w == 0 ? "connection timed out" : strerror(errno));
    return -1;
  }
  int soerr = 0;
  socklen_t sl = sizeof(soerr);
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0) soerr = errno;
  if (soerr) {
    gtask__fmt(errbuf, errlen, "%s", strerror(soerr));
    return -1;
  }
  return 0;
}

static int open_tcp(const gtask__endpoint *ep, int64_t deadline, char *errbuf, size_t errlen) {
  char port[16];
  gtask__fmt(port, sizeof(port), "%d", ep->port);
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
  struct addrinfo *res = NULL;
  int gai = getaddrinfo(ep->host, port, &hints, &res);
  if (gai != 0) {
    gtask__fmt(errbuf, errlen, "%s", gai_strerror(gai));
    return -1;
  }
  int fd = -1;
  for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
      gtask__fmt(errbuf, errlen, "%s", strerror(errno));
      continue;
    }
    if (connect_fd(fd, ai->ai_addr, ai->ai_addrlen, deadline, errbuf, errlen) == 0) break;
    close(fd);
    fd = -1;
  }
  freeaddrinfo(res);
  if (fd < 0) return -1;
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  /* Keepalive finds a server that vanished without a word (a host gone):
   * probes after 15 s idle, every 5 s, 3 of them. */
  setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
  int idle = 15, intvl = 5, cnt = 3;
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
  return fd;
}

static int open_unix(const char *path, int64_t deadline, char *errbuf, size_t errlen) {
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof(sa.sun_path)) {
    gtask__fmt(errbuf, errlen, "unix socket path too long");
    return -1;
  }
  memcpy(sa.sun_path, path, strlen(path) + 1);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    gtask__fmt(errbuf, errlen, "%s", strerror(errno));
    return -1;
  }
  if (connect_fd(fd, (struct sockaddr *)&sa, sizeof(sa), deadline, errbuf, errlen) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

static bool is_ip_literal(const char *host) {
  unsigned char buf[sizeof(struct in6_addr)];
  return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

/* The TLS handshake on connected fd.  The certificate's problem, if that is
 * what failed, is told in words (expired, unknown CA, name mismatch). */
static int handshake(gtask__conn *c, const gtask__endpoint *ep, int64_t deadline, char *errbuf,
                     size_t errlen) {
  const char *name = ep->tls_name && ep->tls_name[0] ? ep->tls_name : ep->host;
  c->ssl = SSL_new(ep->tls);
  if (!c->ssl || !SSL_set_fd(c->ssl, c->fd)) {
    gtask__fmt(errbuf, errlen, "TLS: cannot create a session");
    return -1;
  }
  SSL_set_mode(c->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  bool ip = is_ip_literal(name);
  if (!ip) SSL_set_tlsext_host_name(c->ssl, name); /* SNI takes names only */
  if (ep->tls_verify) {
    SSL_set_verify(c->ssl, SSL_VERIFY_PEER, NULL);
    int ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), name)
                : SSL_set1_host(c->ssl, name);
    if (!ok) {
      gtask__fmt(errbuf, errlen, "TLS: cannot check the name \"%s\"", name);
      return -1;
    }
  } else {
    SSL_set_verify(c->ssl, SSL_VERIFY_NONE, NULL);
  }
  for (;;) {
    ERR_clear_error();
    int r = SSL_connect(c->ssl);
    if (r == 1) return 0;
    int e = SSL_get_error(c->ssl, r);
    short ev = e == SSL_ERROR_WANT_READ ? POLLIN : e == SSL_ERROR_WANT_WRITE ? POLLOUT : 0;
    if (ev) {
      int w = wait_fd(c->fd, ev, deadline);
      if (w > 0) continue;
      gtask__fmt(errbuf, errlen, "TLS handshake: %s", w == 0 ? "timed out" : strerror(errno));
      return -1;
    }
    long vr = SSL_get_verify_result(c->ssl);
    if (vr != X509_V_OK) {
      gtask__fmt(errbuf, errlen, "TLS: server certificate rejected: %s",
                 X509_verify_cert_error_string(vr));
    } else {
      char why[200];
      ssl_reason(why, sizeof(why));
      gtask__fmt(errbuf, errlen, "TLS handshake failed: %s", why);
    }
    return -1;
  }
}

int gtask__conn_connect(const gtask__endpoint *ep, int64_t timeout_ms, gtask__conn **out,
                        char *errbuf, size_t errlen) {
  *out = NULL;
  gtask__conn *c = gtask__calloc(1, sizeof(*c));
  if (!c) return GTASK_ENOMEM;
  c->fd = -1;
  c->timeout_ms = timeout_ms;
  c->reader = redisReaderCreate();
  if (!c->reader) {
    gtask__free(c);
    return GTASK_ENOMEM;
  }
  int64_t deadline = deadline_of(timeout_ms);
  c->fd = ep->unix_path ? open_unix(ep->unix_path, deadline, errbuf, errlen)
                        : open_tcp(ep, deadline, errbuf, errlen);
  if (c->fd < 0 || (ep->tls && !ep->unix_path && handshake(c, ep, deadline, errbuf, errlen) != 0)) {
    gtask__conn_free(c);
    return GTASK_ECONN;
  }
  int fl = fcntl(c->fd, F_GETFL);
  if (fl >= 0) fcntl(c->fd, F_SETFL, fl & ~O_NONBLOCK);
  apply_timeout(c->fd, timeout_ms);
  *out = c;
  return 0;
}

void gtask__conn_free(gtask__conn *c) {
  if (!c) return;
  if (c->ssl) {
    /* A close_notify only if the session is sound; never wait for the peer's. */
    if (!c->err) SSL_shutdown(c->ssl);
    SSL_free(c->ssl);
  }
  if (c->fd >= 0) close(c->fd);
  if (c->reader) redisReaderFree(c->reader);
  gtask__free(c->obuf);
  if (c->live) atomic_fetch_sub_explicit(c->live, 1, memory_order_release);
  gtask__free(c);
}

void gtask__conn_set_timeout(gtask__conn *c, int64_t ms) {
  ms = ms > 0 ? ms : 0;
  if (ms == c->timeout_ms) return;
  c->timeout_ms = ms;
  apply_timeout(c->fd, ms);
}

size_t gtask__conn_unsent(const gtask__conn *c) { return c->olen - c->opos; }

/* A TLS 1.3 server that requires a client certificate says so only after
 * the handshake, by closing the connection at the first command: name the
 * likely cause when we presented none. */
static const char *no_cert_hint(gtask__conn *c) {
  return c->ssl && !SSL_get_certificate(c->ssl)
             ? " (if the server requires a client certificate -- tls-auth-clients yes -- "
               "give one: cert= and key=, or --tls-cert and --tls-key)"
             : "";
}

/* ---------------------------------------------------------------- write */

int gtask__conn_append(gtask__conn *c, const char *buf, size_t len) {
  if (c->err) return REDIS_ERR;
  if (c->opos == c->olen) c->opos = c->olen = 0;
  if (c->olen + len > c->ocap) {
    size_t cap = c->ocap ? c->ocap : 1024;
    while (cap < c->olen + len) cap *= 2;
    char *b = gtask__realloc(c->obuf, cap);
    if (!b) {
      set_err(c, REDIS_ERR_OOM, "out of memory");
      return REDIS_ERR;
    }
    c->obuf = b;
    c->ocap = cap;
  }
  memcpy(c->obuf + c->olen, buf, len);
  c->olen += len;
  return REDIS_OK;
}

/* Formats a command (hiredis's format) and appends it: gtask__conn_appendf
 * and gtask__conn_command. */
static int conn_vappendf(gtask__conn *c, const char *fmt, va_list ap) {
  char *cmd = NULL;
  int len = redisvFormatCommand(&cmd, fmt, ap);
  if (len < 0) {
    set_err(c, REDIS_ERR_OOM, "out of memory formatting a command");
    return REDIS_ERR;
  }
  int rc = gtask__conn_append(c, cmd, (size_t)len);
  free(cmd); /* hiredis allocated it with its own (libc) allocator */
  return rc;
}

int gtask__conn_appendf(gtask__conn *c, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = conn_vappendf(c, fmt, ap);
  va_end(ap);
  return rc;
}

/* Writes obuf[opos..olen); a socket timeout is a failure. */
static int flush(gtask__conn *c) {
  while (c->opos < c->olen) {
    const char *p = c->obuf + c->opos;
    size_t left = c->olen - c->opos;
    if (c->ssl) {
      ERR_clear_error();
      int n = SSL_write(c->ssl, p, left > (size_t)1 << 30 ? 1 << 30 : (int)left);
      if (n > 0) {
        c->opos += (size_t)n;
        continue;
      }
      int e = SSL_get_error(c->ssl, n);
      if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
        set_err(c, REDIS_ERR_IO, "timed out writing");
      } else {
        char why[200];
        ssl_reason(why, sizeof(why));
        set_err(c, REDIS_ERR_IO, "TLS write: %s%s", why, no_cert_hint(c));
      }
      return REDIS_ERR;
    }
    ssize_t n = send(c->fd, p, left, MSG_NOSIGNAL);
    if (n > 0) {
      c->opos += (size_t)n;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    set_err(c, REDIS_ERR_IO, "%s",
            n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) ? "timed out writing"
                                                               : strerror(errno));
    return REDIS_ERR;
  }
  c->opos = c->olen = 0;
  return REDIS_OK;
}

int gtask__conn_flush(gtask__conn *c) {
  if (c->err) return REDIS_ERR;
  return flush(c);
}

/* ---------------------------------------------------------------- read */

/* Reads into the reader, waiting up to the socket's timeout: 1 read
 * something, 0 the wait timed out (the connection stays usable), -1 failed
 * (c->err). */
static int read_some(gtask__conn *c) {
  char buf[READ_CHUNK];
  if (c->ssl) {
    ERR_clear_error();
    int n = SSL_read(c->ssl, buf, sizeof(buf));
    if (n > 0) {
      if (redisReaderFeed(c->reader, buf, (size_t)n) != REDIS_OK) {
        set_err(c, REDIS_ERR_OOM, "out of memory reading a reply");
        return -1;
      }
      return 1;
    }
    int e = SSL_get_error(c->ssl, n);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return 0;
    if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0)) {
      set_err(c, REDIS_ERR_EOF, "Server closed the connection");
      return -1;
    }
    char why[200];
    ssl_reason(why, sizeof(why));
    set_err(c, REDIS_ERR_IO, "TLS read: %s%s", why, no_cert_hint(c));
    return -1;
  }
  ssize_t n = recv(c->fd, buf, sizeof(buf), 0);
  if (n > 0) {
    if (redisReaderFeed(c->reader, buf, (size_t)n) != REDIS_OK) {
      set_err(c, REDIS_ERR_OOM, "out of memory reading a reply");
      return -1;
    }
    return 1;
  }
  if (n == 0) {
    set_err(c, REDIS_ERR_EOF, "Server closed the connection");
    return -1;
  }
  if (errno == EINTR) return read_some(c);
  if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
  set_err(c, REDIS_ERR_IO, "%s", strerror(errno));
  return -1;
}

/* Hands reply r out, noting a MOVED (see gtask__conn.moved). */
static int got_reply(gtask__conn *c, redisReply *r, redisReply **reply) {
  if (r->type == REDIS_REPLY_ERROR && r->len > 6 && r->len < sizeof(c->moved) &&
      memcmp(r->str, "MOVED ", 6) == 0)
    memcpy(c->moved, r->str, r->len + 1);
  *reply = r;
  return REDIS_OK;
}

int gtask__conn_get_reply(gtask__conn *c, redisReply **reply) {
  *reply = NULL;
  if (c->err) return REDIS_ERR;
  void *r = NULL;
  if (redisReaderGetReply(c->reader, &r) != REDIS_OK) goto protocol;
  if (r) return got_reply(c, r, reply);
  if (flush(c) != REDIS_OK) return REDIS_ERR;
  for (;;) {
    int got = read_some(c);
    if (got < 0) return REDIS_ERR;
    if (got == 0) {
      set_err(c, REDIS_ERR_IO, "timed out waiting for the reply");
      return REDIS_ERR;
    }
    if (redisReaderGetReply(c->reader, &r) != REDIS_OK) goto protocol;
    if (r) return got_reply(c, r, reply);
  }
protocol:
  set_err(c, REDIS_ERR_PROTOCOL, "protocol error: %s", c->reader->errstr);
  return REDIS_ERR;
}

int gtask__conn_poll_reply(gtask__conn *c, int64_t wait_ms, redisReply **reply) {
  *reply = NULL;
  if (c->err) return -1;
  void *r = NULL;
  for (;;) {
    if (redisReaderGetReply(c->reader, &r) != REDIS_OK) {
      set_err(c, REDIS_ERR_PROTOCOL, "protocol error: %s", c->reader->errstr);
      return -1;
    }
    if (r) {
      *reply = r;
      return 1;
    }
    /* Nothing buffered (TLS: nor decrypted): wait for the socket first. */
    if (!(c->ssl && SSL_pending(c->ssl) > 0)) {
      int w = wait_fd(c->fd, POLLIN, gtask__mono_ms() + (wait_ms > 0 ? wait_ms : 1));
      if (w == 0) return 0;
      if (w < 0) {
        set_err(c, REDIS_ERR_IO, "%s", strerror(errno));
        return -1;
      }
    }
    int got = read_some(c);
    if (got < 0) return -1;
    if (got == 0) return 0; /* a TLS record without data (the socket timeout ran out) */
  }
}

int gtask__conn_wait_any(gtask__conn *const *cs, size_t n, int64_t wait_ms) {
  struct pollfd p[64];
  if (n > 64) n = 64;
  for (;;) {
    for (size_t k = 0; k < n; k++) { /* TLS: a record decrypted and not read yet */
      if (cs[k]->err) return (int)k;
      if (cs[k]->ssl && SSL_pending(cs[k]->ssl) > 0) return (int)k;
      p[k].fd = cs[k]->fd;
      p[k].events = POLLIN;
      p[k].revents = 0;
    }
    int got = poll(p, (nfds_t)n, wait_ms < 0 ? -1 : wait_ms > 1000000 ? 1000000 : (int)wait_ms);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return -1;
    for (size_t k = 0; k < n; k++)
      if (p[k].revents) return (int)k;
    return -1;
  }
}

redisReply *gtask__conn_command(gtask__conn *c, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = conn_vappendf(c, fmt, ap);
  va_end(ap);
  redisReply *rep = NULL;
  if (rc == REDIS_OK) gtask__conn_get_reply(c, &rep);
  return rep;
}

bool gtask__conn_idle_dead(gtask__conn *c) {
  if (c->err) return true;
  struct pollfd p = {.fd = c->fd, .events = POLLIN};
  if (poll(&p, 1, 0) == 0) return false;
  if (!c->ssl) return true;
  /* TLS 1.3 servers send session tickets after the handshake: records that
   * carry no data.  Read them (without blocking); only data or a close
   * means the idle connection is not what it should be. */
  int fl = fcntl(c->fd, F_GETFL);
  if (fl < 0 || fcntl(c->fd, F_SETFL, fl | O_NONBLOCK) != 0) return true;
  char b;
  ERR_clear_error();
  int n = SSL_peek(c->ssl, &b, 1);
  int e = n > 0 ? SSL_ERROR_NONE : SSL_get_error(c->ssl, n);
  fcntl(c->fd, F_SETFL, fl);
  return n > 0 || e != SSL_ERROR_WANT_READ;
}
