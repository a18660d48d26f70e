/* Each line's nested (per-rank) values as the loader keeps them: compact JSON
 * text with sorted keys, as orjson.dumps(orjson.loads(v), OPT_SORT_KEYS)
 * writes it -- for the lines where that text can be told from the bytes
 * alone.  Every other line is marked unsure and Python parses it.
 *
 * A line is unsure when it holds a backslash, is not one JSON object, or a
 * wanted field holds a scalar other than null.  A nested value makes its
 * line unsure when it holds a text with a byte outside 0x20..0x7e, an
 * exponent, a float whose text is not its shortest (a trailing zero, below
 * 1e-4, 1e15 or more, or past 15 significant digits a shorter text naming
 * the same double), an integer of more than 18 digits or -0, a repeated
 * key, or more than MAXDEPTH levels.  Inside those bounds a number's text
 * is the one Python's repr and orjson write (15 significant digits or fewer
 * name one double; the fixed notation is theirs from 1e-4 to 1e16), so the
 * value is copied, white space dropped and keys sorted by their bytes.
 *
 * The values of other fields are only skipped, their syntax not checked:
 * the caller gives lines pyarrow has read and whose text was checked
 * (UTF-8, no control characters) -- this pass is not a JSON validator.
 *
 * Output: key j's texts one after another in out + j * cap, row i's text
 * at [offs[j*(n+1)+i], offs[j*(n+1)+i+1]) of it; valid[j*n+i] 1 for a
 * text, 0 for null or absent; unsure[i] 1 for a line Python must parse.
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAXDEPTH 64

typedef const unsigned char *cur;

typedef struct {
    unsigned char *key;  /* in the output, after the opening quote */
    int64_t klen;
    unsigned char *start, *end;  /* the member's text "key":value in the output */
} member;

typedef struct {
    member *m;
    size_t n, cap;
    unsigned char *tmp;
    size_t tmpcap;
    int failed;  /* out of memory */
} ctx;

static cur ws(cur p, cur e) {
    while (p < e && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) p++;
    return p;
}

static int isdig(unsigned char c) { return c >= '0' && c <= '9'; }

/* true, false or null, copied where ``out``. */
static cur literal(cur p, cur e, unsigned char **out) {
    size_t len;
    if (e - p >= 4 && memcmp(p, "true", 4) == 0) len = 4;
    else if (e - p >= 4 && memcmp(p, "null", 4) == 0) len = 4;
    else if (e - p >= 5 && memcmp(p, "false", 5) == 0) len = 5;
    else return NULL;
    if (out) {
        unsigned char *o = *out;
        for (size_t i = 0; i < len; i++) *o++ = p[i];
        *out = o;
    }
    return p + len;
}

/* Whether the digits of ``digits`` (``sig`` of them, 16 or 17, no trailing zero), the number ``tok``,
 * are its double's shortest digits: no text of one digit fewer names that double, and the text of
 * ``sig`` digits correctly rounded is this one (glibc's printf and strtod round exactly). */
static int shortest(cur tok, int64_t toklen, cur ip, int64_t intlen, cur fp, int64_t fraclen, int sig) {
    char t[64], a[64];
    if (toklen >= (int64_t)sizeof t) return 0;
    memcpy(t, tok, (size_t)toklen);
    t[toklen] = 0;
    double d = strtod(t, NULL);
    snprintf(a, sizeof a, "%.*e", sig - 2, d);
    if (strchr(a, '.') == NULL) return 0;  /* not the C locale's point: unsure */
    if (strtod(a, NULL) == d) return 0;
    int len = snprintf(a, sizeof a, "%.*e", sig - 1, d);
    if (len <= 0 || len >= (int)sizeof a) return 0;
    char want[40];
    int w = 0;
    int started = 0;
    for (int64_t i = 0; i < intlen; i++) {
        if (ip[i] != '0') started = 1;
        if (started) want[w++] = (char)ip[i];
    }
    for (int64_t i = 0; i < fraclen && w < 39; i++) {
        if (fp[i] != '0') started = 1;
        if (started) want[w++] = (char)fp[i];
    }
    if (w != sig) return 0;
    const char *m = a[0] == '-' ? a + 1 : a;
    if (m[0] != want[0] || m[1] != '.') return 0;
    return memcmp(m + 2, want + 1, (size_t)(sig - 1)) == 0;
}

/* A number whose text is its canonical text, copied as it is read (short runs: no memcpy call);
 * NULL otherwise. */
static cur number(cur p, cur e, unsigned char **out) {
    unsigned char *o = *out;
    cur start = p;
    int neg = 0;
    if (p < e && *p == '-') {
        neg = 1;
        *o++ = *p++;
    }
    if (p >= e || !isdig(*p)) return NULL;
    cur ip = p;
    if (*p == '0') {
        *o++ = *p++;
        if (p < e && isdig(*p)) return NULL;
    } else {
        while (p < e && isdig(*p)) *o++ = *p++;
    }
    int64_t intlen = p - ip;
    int zero_int = (intlen == 1 && *ip == '0');
    if (p < e && (*p == 'e' || *p == 'E')) return NULL;
    if (p < e && *p == '.') {
        *o++ = *p++;
        cur fp = p;
        while (p < e && isdig(*p)) *o++ = *p++;
        int64_t fraclen = p - fp;
        if (fraclen == 0) return NULL;
        if (p < e && (*p == 'e' || *p == 'E')) return NULL;
        if (intlen > 15) return NULL;
        if (!(fraclen == 1 && *fp == '0')) {  /* x.0 is the form of a whole float */
            if (p[-1] == '0') return NULL;
            int64_t sig;
            if (zero_int) {
                int64_t z = 0;
                while (z < fraclen && fp[z] == '0') z++;
                if (z > 3) return NULL;  /* below 1e-4: an exponent in repr */
                sig = fraclen - z;
            } else {
                sig = intlen + fraclen;
            }
            if (sig > 17) return NULL;
            if (sig > 15 && !shortest(start, p - start, ip, intlen, fp, fraclen, (int)sig)) return NULL;
        }
    } else {
        if (intlen > 18) return NULL;
        if (neg && zero_int) return NULL;
    }
    *out = o;
    return p;
}

/* A text of bytes 0x20..0x7e but the quote, copied with its quotes as it is read. */
static cur text(cur p, cur e, unsigned char **out) {
    unsigned char *o = *out;
    *o++ = *p++;
    while (p < e && *p != '"') {
        if (*p < 0x20 || *p > 0x7e || *p == '\\') return NULL;
        *o++ = *p++;
    }
    if (p >= e) return NULL;
    *o++ = *p++;
    *out = o;
    return p;
}

static int by_key(const void *a, const void *b) {
    const member *x = a, *y = b;
    int64_t n = x->klen < y->klen ? x->klen : y->klen;
    int c = memcmp(x->key, y->key, (size_t)n);
    if (c) return c;
    return (x->klen > y->klen) - (x->klen < y->klen);
}

/* Past white space and then a comma (written at *out where out) or ``close``: 1 after a comma, 2 after
 * ``close``, 0 where neither follows. */
static int after(cur *pp, cur e, unsigned char close, unsigned char **out) {
    cur p = ws(*pp, e);
    if (p < e && *p == ',') {
        if (out) *(*out)++ = ',';
        *pp = ws(p + 1, e);
        return 1;
    }
    if (p < e && *p == close) {
        *pp = p + 1;
        return 2;
    }
    return 0;
}

static cur value(cur p, cur e, unsigned char **out, int depth, ctx *c);

static cur object(cur p, cur e, unsigned char **out, int depth, ctx *c) {
    unsigned char *o = *out;
    size_t base = c->n;
    int sorted = 1;
    *o++ = '{';
    p = ws(p + 1, e);
    if (p < e && *p == '}') {
        *o++ = '}';
        *out = o;
        return p + 1;
    }
    for (;;) {
        if (p >= e || *p != '"') return NULL;
        if (c->n == c->cap) {
            size_t cap = c->cap ? 2 * c->cap : 256;
            member *m = realloc(c->m, cap * sizeof(member));
            if (!m) {
                c->failed = 1;
                return NULL;
            }
            c->m = m;
            c->cap = cap;
        }
        size_t idx = c->n++;  /* this member's slot, before a nested object takes the ones above it */
        member *m = &c->m[idx];
        m->start = o;
        unsigned char *k = o;
        p = text(p, e, &o);
        if (!p) return NULL;
        m->key = k + 1;
        m->klen = (o - k) - 2;
        p = ws(p, e);
        if (p >= e || *p != ':') return NULL;
        *o++ = ':';
        p = ws(p + 1, e);
        p = value(p, e, &o, depth + 1, c);
        if (!p) return NULL;
        m = &c->m[idx];  /* the array may have moved under a nested object */
        m->end = o;
        if (idx > base && by_key(&c->m[idx - 1], m) >= 0) sorted = 0;
        int next = after(&p, e, '}', &o);
        if (next == 2) break;
        if (next == 0) return NULL;
    }
    *o++ = '}';
    size_t count = c->n - base;
    if (!sorted) {
        member *ms = c->m + base;
        qsort(ms, count, sizeof(member), by_key);
        for (size_t i = 1; i < count; i++)
            if (by_key(&ms[i - 1], &ms[i]) == 0) return NULL;  /* a repeated key */
        size_t len = (size_t)(o - *out);
        if (len > c->tmpcap) {
            unsigned char *t = realloc(c->tmp, len);
            if (!t) {
                c->failed = 1;
                return NULL;
            }
            c->tmp = t;
            c->tmpcap = len;
        }
        unsigned char *t = c->tmp;
        *t++ = '{';
        for (size_t i = 0; i < count; i++) {
            if (i) *t++ = ',';
            memcpy(t, ms[i].start, (size_t)(ms[i].end - ms[i].start));
            t += ms[i].end - ms[i].start;
        }
        *t++ = '}';
        memcpy(*out, c->tmp, len);
    }
    c->n = base;
    *out = o;
    return p;
}

static cur array(cur p, cur e, unsigned char **out, int depth, ctx *c) {
    unsigned char *o = *out;
    *o++ = '[';
    p = ws(p + 1, e);
    if (p < e && *p == ']') {
        *o++ = ']';
        *out = o;
        return p + 1;
    }
    for (;;) {
        p = value(p, e, &o, depth + 1, c);
        if (!p) return NULL;
        int next = after(&p, e, ']', &o);
        if (next == 2) break;
        if (next == 0) return NULL;
    }
    *o++ = ']';
    *out = o;
    return p;
}

/* A value in canonical form at *out; NULL where unsure. */
static cur value(cur p, cur e, unsigned char **out, int depth, ctx *c) {
    if (p >= e || depth > MAXDEPTH) return NULL;
    switch (*p) {
        case '{': return object(p, e, out, depth, c);
        case '[': return array(p, e, out, depth, c);
        case '"': return text(p, e, out);
        case 't': case 'f': case 'n': return literal(p, e, out);
        default: return number(p, e, out);
    }
}

/* Past a value of any field not wanted (its text is not kept); NULL where it is not plain JSON. */
static cur skip(cur p, cur e, int depth) {
    if (p >= e || depth > MAXDEPTH) return NULL;
    unsigned char c = *p;
    if (c == '"') {
        cur q = memchr(p + 1, '"', (size_t)(e - p - 1));
        return q ? q + 1 : NULL;
    }
    if (c == '{' || c == '[') {
        unsigned char close = c == '{' ? '}' : ']';
        p = ws(p + 1, e);
        if (p < e && *p == close) return p + 1;
        for (;;) {
            if (c == '{') {
                if (p >= e || *p != '"') return NULL;
                p = skip(p, e, depth + 1);
                if (!p) return NULL;
                p = ws(p, e);
                if (p >= e || *p != ':') return NULL;
                p = ws(p + 1, e);
            }
            p = skip(p, e, depth + 1);
            if (!p) return NULL;
            int next = after(&p, e, close, NULL);
            if (next == 2) return p;
            if (next == 0) return NULL;
        }
    }
    if (c == 't' || c == 'f' || c == 'n') return literal(p, e, NULL);
    if (c != '-' && !isdig(c)) return NULL;
    p++;
    while (p < e && (isdig(*p) || *p == '.' || *p == 'e' || *p == 'E' || *p == '+' || *p == '-')) p++;
    return p;
}

/* One line; 0 where its wanted values were written, 1 where unsure. */
static int line(cur p, cur e, int64_t row, int64_t n, const unsigned char *keys, const int32_t *keylens,
                int32_t nkeys, unsigned char *out, int64_t cap, int64_t *offs, unsigned char *valid,
                int64_t *at, ctx *c) {
    if (memchr(p, '\\', (size_t)(e - p))) return 1;
    p = ws(p, e);
    if (p >= e || *p != '{') return 1;
    p = ws(p + 1, e);
    if (p < e && *p == '}') {
        p++;
    } else {
        for (;;) {
            if (p >= e || *p != '"') return 1;
            cur k = p + 1;
            cur q = memchr(k, '"', (size_t)(e - k));
            if (!q) return 1;
            int64_t klen = q - k;
            p = ws(q + 1, e);
            if (p >= e || *p != ':') return 1;
            p = ws(p + 1, e);
            int32_t j = -1;
            const unsigned char *kk = keys;
            for (int32_t i = 0; i < nkeys; kk += keylens[i], i++) {
                if (keylens[i] == klen && memcmp(kk, k, (size_t)klen) == 0) {
                    j = i;
                    break;
                }
            }
            if (j < 0) {
                p = skip(p, e, 1);
                if (!p) return 1;
            } else if (p < e && (*p == '{' || *p == '[')) {
                unsigned char *o = out + j * cap + at[j];  /* a repeated key: the last is kept */
                p = value(p, e, &o, 1, c);
                if (!p) return 1;
                offs[j * (n + 1) + row + 1] = o - (out + j * cap);
                valid[j * n + row] = 1;
            } else if (p < e && *p == 'n') {
                p = literal(p, e, NULL);
                if (!p) return 1;
                offs[j * (n + 1) + row + 1] = at[j];
                valid[j * n + row] = 0;
            } else {
                return 1;  /* a scalar where a nested value was seen: Python keeps it as it is */
            }
            int next = after(&p, e, '}', NULL);
            if (next == 2) break;
            if (next == 0) return 1;
        }
    }
    p = ws(p, e);
    return p != e;
}

/* Every line [starts[i], ends[i]) of buf; returns the number of unsure lines, -1 out of memory. */
int64_t nested_texts(const unsigned char *buf, const int64_t *starts, const int64_t *ends, int64_t n,
                     const unsigned char *keys, const int32_t *keylens, int32_t nkeys, unsigned char *out,
                     int64_t cap, int64_t *offs, unsigned char *valid, unsigned char *unsure) {
    ctx c = {0};
    int64_t *at = calloc((size_t)(nkeys > 0 ? nkeys : 1), sizeof(int64_t));
    if (!at) return -1;
    int64_t count = 0;
    for (int32_t j = 0; j < nkeys; j++) offs[j * (n + 1)] = 0;
    for (int64_t i = 0; i < n; i++) {
        for (int32_t j = 0; j < nkeys; j++) {
            offs[j * (n + 1) + i + 1] = at[j];
            valid[j * n + i] = 0;
        }
        int bad = line(buf + starts[i], buf + ends[i], i, n, keys, keylens, nkeys, out, cap, offs, valid, at, &c);
        if (c.failed) {
            count = -1;
            break;
        }
        unsure[i] = (unsigned char)bad;
        for (int32_t j = 0; j < nkeys; j++) {
            if (bad) {
                offs[j * (n + 1) + i + 1] = at[j];
                valid[j * n + i] = 0;
            }
            at[j] = offs[j * (n + 1) + i + 1];
        }
        c.n = 0;
        count += bad;
    }
    free(c.m);
    free(c.tmp);
    free(at);
    return count;
}
