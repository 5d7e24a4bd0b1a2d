/* redis/conn.h -- gtask's own Redis connections: TCP, unix socket or TLS
 * (OpenSSL), non-blocking sockets driven with poll(2) against a deadline, and
 * hiredis' RESP parser (redisReader) for replies.
 *
 * Debian 12's hiredis (0.14) has no TLS and no pluggable transport, so gtask
 * owns its sockets and keeps of hiredis only what is worth keeping: the reply
 * parser, the reply objects (redisReply, freed with freeReplyObject) and the
 * printf-style command formatter.  Every connection the library opens goes
 * through here; nothing else in src/ talks to a socket.  docs/DESIGN.md says
 * why, and what it costs.
 *
 * The calls mirror the hiredis ones they replace (redisCommand,
 * redisAppendCommand, redisGetReply), with the same error convention: a call
 * that fails returns NULL or REDIS_ERR and leaves c->err (REDIS_ERR_IO, _EOF,
 * _PROTOCOL, _OOM, _OTHER) and c->errstr set; a connection with err set is
 * broken for good and must be freed.
 *
 * A gtask__conn is used by one thread at a time. */
#ifndef GTASK_REDIS_CONN_H
#define GTASK_REDIS_CONN_H

#include "../internal.h"

#include <hiredis/hiredis.h>
#include <openssl/ssl.h>
#include <stdatomic.h>

typedef struct gtask__conn {
  int err;          /* 0, or REDIS_ERR_*: the connection is unusable */
  char errstr[256]; /* why, when err is set */
  int fd;
  SSL *ssl;                 /* TLS session, or NULL for plain TCP and unix */
  redisReader *reader;      /* parses what the server sent */
  char *obuf;               /* commands appended and not yet written: */
  size_t opos, olen, ocap;  /*   bytes obuf[opos..olen) */
  int64_t timeout_ms;       /* bound of each command (write + read); 0: none */
  unsigned gen;             /* the pool's master generation when it connected (Sentinel) */
  void *owner;              /* the pool (gtask__redis) it belongs to, or NULL */
  atomic_int *live;         /* the owner's count of its live connections, or NULL:
                               decremented when c is freed (a cluster node's pool
                               that left the map is freed only at 0) */
  char moved[96];           /* the last "MOVED slot host:port" error reply read on c,
                               or "": the pool corrects the slot map from it when c
                               comes back, whichever call path read it */
} gtask__conn;

/* Where and how to connect. */
typedef struct gtask__endpoint {
  const char *host;      /* TCP host or address, or NULL for unix */
  int port;              /* TCP port */
  const char *unix_path; /* unix socket path, or NULL */
  SSL_CTX *tls;          /* TLS over TCP with this context, or NULL */
  const char *tls_name;  /* the name to send (SNI) and to check the certificate
                            against: host unless set; an IP address is checked
                            against the certificate's IP entries */
  bool tls_verify;       /* check the server's certificate and name */
} gtask__endpoint;

/* Connects within timeout_ms (> 0), with the TLS handshake if ep->tls.
 * GTASK_ECONN (reason in errbuf: refused, timed out, the certificate's
 * problem...) or GTASK_ENOMEM.  The connection's command timeout is
 * timeout_ms too. */
int gtask__conn_connect(const gtask__endpoint *ep, int64_t timeout_ms, gtask__conn **out,
                        char *errbuf, size_t errlen);
void gtask__conn_free(gtask__conn *c);

/* Bound of each later command (from its write to its reply); 0: none. */
void gtask__conn_set_timeout(gtask__conn *c, int64_t ms);

/* Appends a command to be written with the next get_reply: preformatted RESP
 * bytes, or formatted like redisCommand.  REDIS_OK or REDIS_ERR (c->err). */
int gtask__conn_append(gtask__conn *c, const char *buf, size_t len);
int gtask__conn_appendf(gtask__conn *c, const char *fmt, ...);

/* Writes what was appended, then reads the next reply (free it with
 * freeReplyObject).  REDIS_OK, or REDIS_ERR with c->err set. */
int gtask__conn_get_reply(gtask__conn *c, redisReply **reply);

/* Waits up to wait_ms for the next reply, for a connection whose replies come
 * unasked (SUBSCRIBE): 1 and *reply, 0 if none came (the connection stays
 * usable), -1 with c->err set. */
int gtask__conn_poll_reply(gtask__conn *c, int64_t wait_ms, redisReply **reply);

/* Writes what was appended without reading a reply (for a command whose
 * reply is awaited with gtask__conn_wait_any).  REDIS_OK or REDIS_ERR. */
int gtask__conn_flush(gtask__conn *c);

/* Waits up to wait_ms (< 0: for ever) until one of cs[0..n) (n <= 64, none
 * with unread replies in its reader) has something to read or is broken:
 * its index, or -1 if none within the time. */
int gtask__conn_wait_any(gtask__conn *const *cs, size_t n, int64_t wait_ms);

/* appendf + get_reply: the reply, or NULL with c->err set. */
redisReply *gtask__conn_command(gtask__conn *c, const char *fmt, ...);

/* Bytes appended and not yet written (after a failure: how much of the
 * pipeline never left). */
size_t gtask__conn_unsent(const gtask__conn *c);

/* An idle connection has nothing to read: true if the server closed it or
 * sent something unasked (a TLS session ticket excepted). */
bool gtask__conn_idle_dead(gtask__conn *c);

#endif /* GTASK_REDIS_CONN_H */
