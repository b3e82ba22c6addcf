/*
 * scram — the server side of SCRAM-SHA-256 (RFC 5802, RFC 7677) as the
 * PostgreSQL door uses it: parsers of the two client messages, the
 * server-first message, and the check of the client's proof against the
 * stored SaltedPassword (auth_user_scram), answering the server signature.
 *
 * Why here: the users database keeps PBKDF2-HMAC-SHA-256 keys, which are
 * SCRAM's SaltedPassword, so a SCRAM exchange needs nothing but the stored
 * key — no password on the wire, no slow hash per login. Pure (no sockets,
 * no randomness of its own: the caller passes the server nonce bytes), so
 * it is unit-tested and fuzzed as is.
 *
 * How: scram_server_first() parses client-first-message (gs2 header "n,,"
 * or "y,,", no channel binding "p=", no "m=" extension; the user name in
 * it is ignored — PostgreSQL takes the startup packet's), keeps its bare
 * part and the gs2 header, and builds "r=<cnonce><snonce>,s=<salt>,i=<n>".
 * scram_server_final() parses client-final-message, checks the channel
 * binding echoes the gs2 header and the nonce is the combined one, then
 * ClientKey = proof XOR HMAC(StoredKey, AuthMessage) and compares
 * H(ClientKey) with StoredKey = H(HMAC(SaltedPassword, "Client Key")) in
 * constant time; on success it writes "v=<ServerSignature>".
 */
#ifndef SCRAM_H
#define SCRAM_H

#include <stddef.h>
#include <stdint.h>

#define SCRAM_MAX_MSG 1024   /* bytes of one client message */
#define SCRAM_NONCE_BYTES 18 /* random bytes of the server nonce (24 base64 chars) */
#define SCRAM_KEY_LEN 32     /* SHA-256 */
#define SCRAM_MECH "SCRAM-SHA-256"

/* The parts of client-first-message (pointers into the message). */
typedef struct scram_first {
    char cbind;      /* 'n' or 'y' */
    const char *gs2; /* the gs2 header ("n,," ...), gs2_len bytes */
    size_t gs2_len;
    const char *user; /* n= value as sent (may be empty) */
    size_t user_len;
    const char *nonce; /* r= value */
    size_t nonce_len;
    const char *bare; /* client-first-message-bare */
    size_t bare_len;
} scram_first_t;

/* The parts of client-final-message. */
typedef struct scram_final {
    const char *cbind; /* c= value (base64 of the gs2 header) */
    size_t cbind_len;
    const char *nonce; /* r= value */
    size_t nonce_len;
    size_t without_proof; /* length of client-final-message-without-proof */
    uint8_t proof[SCRAM_KEY_LEN];
} scram_final_t;

/* 0, or ST_EPROTO (malformed, channel binding asked, unknown mandatory
 * extension) / ST_ELIMIT (over SCRAM_MAX_MSG). */
int scram_parse_first(const char *msg, size_t len, scram_first_t *out);
int scram_parse_final(const char *msg, size_t len, scram_final_t *out);

/* One exchange, server side. */
typedef struct scram_server {
    char gs2[SCRAM_MAX_MSG];
    size_t gs2_len;
    char bare[SCRAM_MAX_MSG]; /* client-first-message-bare */
    size_t bare_len;
    char first[SCRAM_MAX_MSG + 128]; /* server-first-message */
    size_t first_len;
    char nonce[SCRAM_MAX_MSG + 32]; /* combined nonce */
    size_t nonce_len;
} scram_server_t;

/* Parse client-first msg and write server-first into s->first (NUL-ended).
 * rnd: SCRAM_NONCE_BYTES random bytes. 0 or ST_EPROTO / ST_ELIMIT. */
int scram_server_first(scram_server_t *s, const char *msg, size_t len, const uint8_t *salt,
                       size_t salt_len, uint32_t iterations, const uint8_t *rnd);

/* Check client-final msg against salted_password (SCRAM_KEY_LEN bytes;
 * NULL: an unknown user — always fails, after the same work). 0 with
 * "v=..." (NUL-ended) in out; ST_EINVAL: the proof is wrong; ST_EPROTO:
 * malformed, nonce or channel binding mismatch; ST_ELIMIT. */
int scram_server_final(const scram_server_t *s, const char *msg, size_t len,
                       const uint8_t *salted_password, char *out, size_t cap);

/* The client side's computation of the proof (tests): ClientProof for
 * auth_message under salted_password. */
int scram_client_proof(const uint8_t *salted_password, const char *auth_message, size_t len,
                       uint8_t proof[SCRAM_KEY_LEN]);

#endif
