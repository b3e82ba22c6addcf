/*
 * fuzz_idx — series.log replay and matchers (node/engine/idx.h).
 *
 * The first input byte picks a mode (low 2 bits):
 *   0: the rest is the contents of series.log, as is;
 *   1: the rest is a list of blocks (u16le length + bytes), each framed by
 *      the harness as a valid record (LZ4 + CRC-32C), so the block decoder
 *      is reached past the checksum;
 *   2: the rest is a list of matchers, one per line: a type digit 0-3, the
 *      label name, '\t', the value; selected against a fixed index.
 *   3: like 1, then mode 2's matchers run against what was loaded.
 * Bit 7 of the first byte also persists a new series and reopens.
 * After a successful open everything is walked: labels, lookups, label
 * names/values and one select per label name.
 */
#include <dirent.h>
#include <fcntl.h>
#include <lz4.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "idx.h"
#include "st_crc32c.h"
#include "st_err.h"
#include "st_varint.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[64];
static char logp[128];

static void cleanup(void)
{
    unlink(logp);
    rmdir(dir);
}

static int setup(void)
{
    if (dir[0])
        return 0;
    snprintf(dir, sizeof dir, "%s/fuzz_idx_XXXXXX",
             access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    if (!mkdtemp(dir))
        return -1;
    snprintf(logp, sizeof logp, "%s/series.log", dir);
    atexit(cleanup);
    return 0;
}

static int write_file(const uint8_t *p, size_t n)
{
    int fd = open(logp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return -1;
    int ok = n == 0 || write(fd, p, n) == (ssize_t)n;
    close(fd);
    return ok ? 0 : -1;
}

/* Mode 1: frame each block as a valid record. */
static size_t frame_blocks(const uint8_t *p, size_t n, uint8_t **out)
{
    size_t cap = 0, len = 0;
    uint8_t *f = NULL;
    while (n >= 2) {
        size_t bl = (size_t)p[0] | (size_t)p[1] << 8;
        p += 2;
        n -= 2;
        if (bl > n)
            bl = n;
        if (bl == 0)
            continue;
        int bound = LZ4_compressBound((int)bl);
        size_t need = len + 13 + (size_t)bound;
        if (need > cap) {
            cap = need * 2;
            uint8_t *nf = realloc(f, cap);
            if (!nf)
                break;
            f = nf;
        }
        uint8_t *r = f + len;
        r[8] = 1;
        st_store_u32le(r + 9, (uint32_t)bl);
        int c = LZ4_compress_default((const char *)p, (char *)r + 13, (int)bl, bound);
        if (c <= 0)
            break;
        st_store_u32le(r, 5 + (uint32_t)c);
        st_store_u32le(r + 4, st_crc32c(0, r + 8, 5 + (size_t)c));
        len += 13 + (size_t)c;
        p += bl;
        n -= bl;
    }
    *out = f;
    return len;
}

static int count_cb(void *arg, const char *s, size_t len)
{
    (void)s;
    *(size_t *)arg += len + 1;
    return 0;
}

typedef struct names {
    char s[256][257];
    int n;
} names_t;

static int name_cb(void *arg, const char *s, size_t len)
{
    names_t *nm = arg;
    if (nm->n < 256 && len <= 256) {
        memcpy(nm->s[nm->n], s, len);
        nm->s[nm->n][len] = '\0';
        nm->n++;
    }
    return 0;
}

static void walk(idx_t *x)
{
    uint32_t n = idx_count(x);
    st_label_t l[ST_LABELS_MAX];
    for (uint32_t i = 0; i < n; i++) {
        int k = idx_labels(x, i, l);
        if (k <= 0)
            abort();
        uint32_t id;
        if (idx_lookup(x, l, (size_t)k, st_labels_hash(l, (size_t)k), &id) || id != i)
            abort();
    }
    size_t total = 0;
    static names_t nm;
    nm.n = 0;
    idx_label_names(x, NULL, 0, name_cb, &nm);
    for (int i = 0; i < nm.n; i++) {
        idx_label_values(x, nm.s[i], NULL, 0, count_cb, &total);
        st_matcher_t m = {ST_MATCH_RE, nm.s[i], ".+"};
        uint32_t *ids;
        size_t k;
        if (idx_select(x, &m, 1, &ids, &k, NULL) == 0) {
            idx_label_names(x, ids, k, count_cb, &total);
            idx_label_values(x, nm.s[i], ids, k, count_cb, &total);
            free(ids);
        }
    }
    (void)idx_mem_bytes(x);
    (void)idx_disk_bytes(x);
}

/* Mode 2: one matcher per line, "<type digit><name>\t<value>". */
static void run_matchers(idx_t *x, const uint8_t *p, size_t n)
{
    char *text = malloc(n + 1);
    if (!text)
        return;
    memcpy(text, p, n);
    text[n] = '\0';
    st_matcher_t m[8];
    size_t nm = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line && nm < 8;
         line = strtok_r(NULL, "\n", &save)) {
        char *tab = strchr(line, '\t');
        if (!tab || line[0] < '0' || line[0] > '3')
            continue;
        *tab = '\0';
        m[nm++] = (st_matcher_t){(st_match_type_t)(line[0] - '0'), line + 1, tab + 1};
    }
    uint32_t *ids;
    size_t k;
    const char *err;
    if (idx_select(x, m, nm, &ids, &k, &err) == 0) {
        for (size_t i = 1; i < k; i++)
            if (ids[i] <= ids[i - 1] || ids[i] >= idx_count(x))
                abort();
        size_t total = 0;
        idx_label_names(x, ids, k, count_cb, &total);
        free(ids);
    } else if (!err) {
        abort();
    }
    free(text);
}

static idx_t *fixed_index(void)
{
    static const char *const vals[] = {"", "a", "b", "ab", "h1", "xh1", "host_1", "é", "a|b", "."};
    static const char *const names[] = {"__name__", "a", "hostname", "z"};
    idx_t *x;
    if (idx_open(dir, &x))
        return NULL;
    for (int i = 0; i < 400; i++) {
        st_label_t l[4];
        size_t k = 0;
        int v = i;
        for (int j = 0; j < 4; j++, v /= 5) {
            if (v % 5 == 4)
                continue;
            const char *s = vals[(v + j) % 10];
            l[k++] = (st_label_t){names[j], s, (uint32_t)strlen(names[j]), (uint32_t)strlen(s)};
        }
        uint32_t id;
        if (k)
            idx_add(x, l, k, st_labels_hash(l, k), &id);
    }
    return x;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || setup())
        return 0;
    int mode = data[0] & 3, persist = data[0] & 0x80;
    data++;
    size--;
    const uint8_t *mtext = data;
    size_t mlen = size;
    if (mode == 3) { /* split: blocks, then a 0xff 0xff marker, then matchers */
        mlen = 0;
        for (size_t i = 0; i + 1 < size; i++)
            if (data[i] == 0xff && data[i + 1] == 0xff) {
                mtext = data + i + 2;
                mlen = size - i - 2;
                size = i;
                break;
            }
    }
    if (mode == 2) {
        static idx_t *fx;
        if (!fx) {
            unlink(logp);
            fx = fixed_index();
            if (!fx)
                return 0;
        }
        run_matchers(fx, mtext, mlen);
        return 0;
    }
    uint8_t *file = NULL;
    size_t flen = size;
    if (mode == 0) {
        if (write_file(data, size))
            return 0;
    } else {
        flen = frame_blocks(data, size, &file);
        int rc = write_file(file, flen);
        free(file);
        if (rc)
            return 0;
    }
    idx_t *x;
    int rc = idx_open(dir, &x);
    if (rc) {
        if (rc != ST_ECORRUPT && rc != ST_EVERSION && rc != ST_ENOMEM)
            abort();
        return 0;
    }
    if (idx_disk_bytes(x) > flen)
        abort();
    walk(x);
    if (mode == 3 && mlen)
        run_matchers(x, mtext, mlen);
    if (persist) {
        uint32_t n = idx_count(x), id;
        st_label_t l = {"fuzz_new_label", "v", 14, 1};
        if (idx_lookup(x, &l, 1, st_labels_hash(&l, 1), &id) == ST_ENOENT &&
            idx_add(x, &l, 1, st_labels_hash(&l, 1), &id) == 0 && idx_persist(x) == 0) {
            idx_close(x);
            if (idx_open(dir, &x))
                abort();
            if (idx_count(x) != n + 1)
                abort();
            walk(x);
        }
    }
    idx_close(x);
    return 0;
}
