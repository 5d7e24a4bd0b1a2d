/* codec.h -- the message codec's own declarations: shared by its three files
 * (and its tests), never included by the rest of the library.
 *
 * The codec turns a task (gtask_task) into a task message and a result
 * (gtask_result) into a result record, and back.  Brokers carry messages as
 * opaque bytes and backends store records as they are; the rest of the library
 * calls only the entry points declared in internal.h ("codec").  It is three
 * files, each with its own job:
 *
 *   encode.c       the encoder: writes JSON straight into a buffer, with no
 *                  tree, exactly the bytes jansson's json_dump would write.
 *   decode.c       the decoder: jansson parses, and this code checks every
 *                  field.  It is the reference: it reads any producer's JSON,
 *                  refuses malformed input with a reason, and decides what is
 *                  well-formed.  Its entry points try decode_fast.c first.
 *   decode_fast.c  the fast path: reads only the compact form encode.c writes,
 *                  without jansson, and declines anything else to the
 *                  reference.  It may decline anything; it must never read a
 *                  message differently from the reference.
 *
 * tests/unit/test_codec.c checks the encoder against jansson's own output and
 * the fast path against the reference (every one-byte change of sample
 * messages); tests/fuzz/fuzz_message.c checks, on any input, that what is
 * decoded encodes, that the encoding is a fixed point, and that the fast path
 * and the reference agree.
 *
 * The format.  docs/PROTOCOL.md (sections 3 and 4) is the specification; this
 * is its summary.
 *
 * Task message, version 2 (GTASK_MSG_VERSION):
 *   {"v":2, "n":"<name>", "a":[VALUE...],
 *    "t":timeout_ms, "r":retry_max, "at":attempts, "l":lost,
 *    "bf":backoff_first_ms, "bm":backoff_max_ms, "c":created_ms,
 *    "x":expires_ms, "ro":retry_on, "pr":priority, "e":"last error"}
 *   "t","r","at","l","x","pr" are left out when 0, "ro" when 1 (timeouts only, the
 *   default; 0 at encode also means it) and "e" when NULL; "bf" and "bm"
 *   are left out when they equal the defaults (1000 and 60000; 0 at encode
 *   also means the default).  The task id and queue are not in the message:
 *   whatever holds it carries them (the stream entry's "i" field, the 36 bytes
 *   before the message in the scheduled set, the dead set's hash field, the
 *   stream's key), which saves ~60 bytes of Redis memory per queued task.
 *   Version 1 had them as "id" and "q"; a decoder still reads it (when both a
 *   field and the holder give an id or queue, they must agree).
 * Result record, version 1 (GTASK_RESULT_VERSION):
 *   {"v":1, "s":"SUCCESS", "vals":[VALUE...], "err":"msg", "ec":-17, "at":n}
 *   "vals", "err", "ec" and "at" are left out when empty or 0.  The task id is
 *   not stored: it is the key.
 * VALUE is a pair [type name, value]: ["int64",5], ["string","x"],
 *   ["bool",true], ["float64",0.1].
 *   - Integers are JSON integers, except uint/uint64 values above INT64_MAX,
 *     which are decimal strings ("18446744073709551615").  A decoder accepts
 *     either form for every integer type and checks the declared type's range.
 *   - Floats are JSON reals printed with 17 significant digits, which
 *     round-trips every double exactly; NaN and the infinities are the strings
 *     "NaN", "Infinity" and "-Infinity" (the sign of a NaN is not kept).  A
 *     float32 is written as the double of the float, so it reads back exactly;
 *     a decoder refuses a float32 whose number is not exactly a float
 *     (["float32", 0.1]) rather than rounding it.
 *   - Strings are JSON strings with their length, so embedded NULs survive
 *     (as \u0000).  JSON text is UTF-8: a string argument or value that is not
 *     valid UTF-8 cannot be encoded (GTASK_EINVAL); send binary data in some
 *     text encoding (base64).  Error messages ("e", "err") are different: they
 *     come from handlers and must never make a result unstorable, so invalid
 *     bytes in them are replaced by '?'.
 * Decoders ignore keys they do not know, so a field may be added within a
 * version as long as old readers can do without it.
 *
 * Changing the format.  A change that old readers cannot ignore (a new meaning
 * for an existing key, a required key, a new value form) needs a new version
 * number; then teach the decoders both versions before any encoder writes the
 * new one.  A change touches these places:
 *   1. docs/PROTOCOL.md, in the same commit, and the summary above; the
 *      version numbers below;
 *   2. the record's struct: gtask_task (internal.h) or gtask_result
 *      (include/gtask/gtask.h);
 *   3. for an integer field, its line in GTASK__TASK_INT_FIELDS or
 *      GTASK__RESULT_INT_FIELDS below: the three codecs expand these tables,
 *      so their files need nothing more.  For any other change:
 *   4. encode.c: gtask__task_encode or gtask__result_encode (a value form:
 *      jw_value);
 *   5. decode.c: task_decode_jansson or result_decode_jansson (a value form:
 *      decode_scalar), the rule the fast path follows;
 *   6. decode_fast.c: fast_task or fast_result (a value form: f_pair; a new
 *      version: FAST_MSG_VERSION, FAST_RESULT_VERSION), for messages with the
 *      change to stay on the fast path.  Left alone, it declines any key,
 *      value form or version it does not know, which is correct and only
 *      slower (test_codec's fast-path cases then fail, to say so);
 *   7. tests/unit/test_codec.c (the round trips, the byte comparison with
 *      jansson, the fast path's cases) and a seed message in
 *      tests/fuzz/corpus/message/.
 *
 * Decoders never trust their input: every malformed field is GTASK_EPROTO
 * with a human reason in err.
 */
#ifndef GTASK_CODEC_H
#define GTASK_CODEC_H

#include "internal.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define GTASK_MSG_VERSION 2    /* the task message version written and read */
#define GTASK_RESULT_VERSION 1 /* the result record version written and read */

#define GTASK__MAX_BODY ((size_t)16 << 20) /* larger messages are GTASK_ETOOBIG */
#define GTASK__MAX_VALUES 1024             /* arguments of a task, values of a result */
#define GTASK__BACKOFF_FIRST_MS 1000       /* "bf" when absent */
#define GTASK__BACKOFF_MAX_MS 60000        /* "bm" when absent */

/* ---------------------------------------------------------------- integer fields
 *
 * Each record's integer fields, one line each, in the order the encoder writes
 * them.  The encoder and both decoders expand these tables, so the three agree
 * on every key, range and default by construction, and an integer field is
 * added with a line here (and its struct member, and its line in
 * docs/PROTOCOL.md).  XX(member, key, type, least, greatest, absent, kept):
 *   member, type      the struct member that holds it (gtask_task,
 *                     gtask_result) and its type, checked below;
 *   key               its JSON key;
 *   least, greatest   its range: outside it, a decoder refuses the record, and
 *                     the encoder a task (a result's members cannot be);
 *   absent            its value when the key is absent.  The encoder reads a 0
 *                     in the struct as this value and leaves the key out when
 *                     the field holds it, unless kept is true.
 * The one rule between fields, backoff_max_ms >= backoff_first_ms, is checked
 * by name in each codec. */
#define GTASK__TASK_INT_FIELDS(XX)                                                   \
  XX(timeout_ms, "t", int64_t, 0, INT64_MAX, 0, false)                               \
  XX(retry_max, "r", int32_t, 0, INT32_MAX, 0, false)                                \
  XX(attempts, "at", uint32_t, 0, UINT32_MAX, 0, false)                              \
  XX(lost, "l", uint32_t, 0, UINT32_MAX, 0, false)                                   \
  XX(backoff_first_ms, "bf", int64_t, 1, INT64_MAX, GTASK__BACKOFF_FIRST_MS, false)  \
  XX(backoff_max_ms, "bm", int64_t, 1, INT64_MAX, GTASK__BACKOFF_MAX_MS, false)      \
  XX(created_ms, "c", int64_t, 0, INT64_MAX, 0, true)                                \
  XX(expires_ms, "x", int64_t, 0, INT64_MAX, 0, false)                              \
  XX(retry_on, "ro", uint32_t, 1, 7, GTASK_RETRY_ON_TIMEOUT, false)                \
  XX(priority, "pr", uint32_t, 0, GTASK_PRIORITY_MAX, 0, false)

#define GTASK__RESULT_INT_FIELDS(XX)                                                 \
  XX(error_code, "ec", int, INT32_MIN, INT32_MAX, 0, false)                          \
  XX(attempts, "at", uint32_t, 0, UINT32_MAX, 0, false)

/* A table's type is its member's (so that a decoder's cast is exact). */
#define XX(member, key, type, least, greatest, absent, kept)                         \
  _Static_assert(_Generic(((gtask_task *)0)->member, type: 1, default: 0),           \
                 "GTASK__TASK_INT_FIELDS: gtask_task." #member " is not " #type);
GTASK__TASK_INT_FIELDS(XX)
#undef XX
#define XX(member, key, type, least, greatest, absent, kept)                         \
  _Static_assert(_Generic(((gtask_result *)0)->member, type: 1, default: 0),         \
                 "GTASK__RESULT_INT_FIELDS: gtask_result." #member " is not " #type);
GTASK__RESULT_INT_FIELDS(XX)
#undef XX

/* ---------------------------------------------------------------- UTF-8
 * For the encoder and the fast path (jansson checks for the reference);
 * inline, as the fast path checks every string it reads. */

/* Length of the well-formed UTF-8 sequence at s (left bytes available), or 0
 * if there is none: overlong forms, surrogates and code points above U+10FFFF
 * are rejected, as jansson does. */
static inline size_t gtask__utf8_seq_len(const unsigned char *s, size_t left) {
  unsigned c = s[0];
  size_t n;
  uint32_t cp;
  if (c < 0x80)
    return 1;
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
    cp = c & 0x1F;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    cp = c & 0x0F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    cp = c & 0x07;
  } else {
    return 0;
  }
  if (left < n)
    return 0;
  for (size_t i = 1; i < n; i++) {
    if ((s[i] & 0xC0) != 0x80)
      return 0;
    cp = (cp << 6) | (s[i] & 0x3F);
  }
  if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10FFFF ||
      (cp >= 0xD800 && cp <= 0xDFFF))
    return 0;
  return n;
}

static inline bool gtask__utf8_valid(const char *s, size_t len) {
  const unsigned char *p = (const unsigned char *)s;
  size_t i = 0;
  while (i < len) {
    if (p[i] < 0x80) { /* fast path for ASCII */
      i++;
      continue;
    }
    size_t n = gtask__utf8_seq_len(p + i, len - i);
    if (n == 0)
      return false;
    i += n;
  }
  return true;
}

/* ---------------------------------------------------------------- the decoders
 * Both decoders' entry points (decode.c) take the fast path first and give
 * what it declines to the reference; tests call each alone through these. */

/* The reference (jansson) decoders alone: as gtask__task_decode_in and
 * gtask__result_decode (internal.h). */
int gtask__task_decode_ref(const char *buf, size_t len, const char *id, const char *queue,
                           gtask_task **out, char *err, size_t errlen);
int gtask__result_decode_ref(const char *buf, size_t len, const char *id, gtask_result **out,
                             char *err, size_t errlen);

/* The fast path alone (decode_fast.c): 0 and *out, GTASK_ENOMEM, or
 * GTASK__DECLINED (*out NULL): not our compact form, or not well-formed --
 * ask the reference, which also gives the reason. */
#define GTASK__DECLINED 1
int gtask__task_decode_fast(const char *buf, size_t len, const char *id, const char *queue,
                            gtask_task **out);
int gtask__result_decode_fast(const char *buf, size_t len, const char *id, gtask_result **out);

/* Sets r->id to id (NULL: left empty), as both decoders do. */
static inline void gtask__result_set_id(gtask_result *r, const char *id) {
  if (id != NULL) {
    size_t n = strnlen(id, GTASK_ID_SIZE - 1);
    memcpy(r->id, id, n);
    r->id[n] = '\0';
  }
}

#endif /* GTASK_CODEC_H */
