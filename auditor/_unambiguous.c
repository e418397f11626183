/* auditor._unambiguous: one pass over a JSON line proving that every JSON parser reads it alike.
 *
 * unambiguous_object(text: bytes) -> bool is True only when `text` is one JSON object, valid per
 * RFC 8259 (whitespace around it allowed), in which
 *   - no object repeats a key (parsers keep the last of repeated keys silently),
 *   - no key holds an escape (so equal keys are equal bytes; an escaped key is not proven),
 *   - no number has an exponent or a run of 19 or more digits (orjson reads an integer beyond 64
 *     bits as a float, msgspec exactly; exponents are spelled differently when written again),
 *   - every string is valid UTF-8 and escapes no surrogate (\ud800-\udfff),
 *   - objects and arrays nest at most MAX_DEPTH deep, an object has at most MAX_KEYS keys and the
 *     objects open at once hold at most MAX_OPEN_KEYS keys (so time and memory stay bounded).
 * False means "not proven", never "invalid": callers then read the text the slower way, which
 * finds and names whatever is wrong. The scan reads only inside the buffer and allocates nothing;
 * it relies on the NUL byte CPython keeps after every bytes object's data: outside strings and
 * literals a NUL is never valid JSON, so the structural checks stop there without a bounds check
 * (and the final check requires the text to end exactly at its size).
 *
 * auditor.fast_decode uses it to skip its own proofs (a re-encoding and a scan for long numbers);
 * without this module (no C compiler at install) those proofs run instead, with the same verdicts.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define MAX_DEPTH 64
#define MAX_KEYS 64
#define MAX_OPEN_KEYS 1024
#define MAX_DIGIT_RUN 18

typedef struct {
    const unsigned char *start;
    Py_ssize_t length;
} Key;

typedef struct {
    const unsigned char *p;
    const unsigned char *end;
    Py_ssize_t open_keys;
    Key keys[MAX_OPEN_KEYS];
} Scan;

static int value(Scan *s, int depth);

/* Whitespace is below '!', everything else JSON allows here is above it: compact text pays one test.
 * Stops at the NUL after the data. */
static inline void skip_space(Scan *s) {
    while (*s->p <= ' ' && (*s->p == ' ' || *s->p == '\n' || *s->p == '\r' || *s->p == '\t')) {
        s->p++;
    }
}

#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL

#if defined(__SSE2__)
#include <emmintrin.h>
#define WORD 16
/* A bit for each of the 16 bytes at p that is '"', '\\', below 0x20 or above 0x7f (signed, those
 * are negative: below 0x20 either way). */
static inline unsigned special_bytes(const unsigned char *p) {
    __m128i v = _mm_loadu_si128((const __m128i *)p);
    __m128i special = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('"')),
                                                 _mm_cmpeq_epi8(v, _mm_set1_epi8('\\'))),
                                    _mm_cmplt_epi8(v, _mm_set1_epi8(0x20)));
    return (unsigned)_mm_movemask_epi8(special);
}
#elif defined(__GNUC__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define WORD 8
/* The high bit of each of the 8 bytes at p (in memory order) that may be '"', '\\', below 0x20
 * or above 0x7f. The lowest one set is always such a byte; bits above it may be false alarms (a
 * borrow), which is harmless as the caller reads that byte and then looks again. */
static inline uint64_t special_bytes(const unsigned char *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    uint64_t quote = v ^ (ONES * '"');
    uint64_t backslash = v ^ (ONES * '\\');
    uint64_t zero_quote = (quote - ONES) & ~quote;
    uint64_t zero_backslash = (backslash - ONES) & ~backslash;
    uint64_t control = (v - ONES * 0x20) & ~v;
    return (zero_quote | zero_backslash | control | v) & HIGHS;
}
#endif

static inline int is_special(unsigned char c) { return c == '"' || c == '\\' || c < 0x20 || c > 0x7F; }

static int hex_digit(unsigned char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* The UTF-8 sequence starting at p (a byte above 0x7f): its length if well formed, else 0. */
static Py_ssize_t utf8_length(const unsigned char *p, const unsigned char *end) {
    unsigned char c = p[0];
    unsigned char low = 0x80, high = 0xBF;
    Py_ssize_t length;
    if (c >= 0xC2 && c <= 0xDF) {
        length = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        length = 3;
        if (c == 0xE0) low = 0xA0;
        if (c == 0xED) high = 0x9F; /* no surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        length = 4;
        if (c == 0xF0) low = 0x90;
        if (c == 0xF4) high = 0x8F; /* nothing above U+10FFFF */
    } else {
        return 0;
    }
    if (end - p < length) return 0;
    if (p[1] < low || p[1] > high) return 0;
    for (Py_ssize_t i = 2; i < length; i++) {
        if (p[i] < 0x80 || p[i] > 0xBF) return 0;
    }
    return length;
}

/* A string; s->p is at its opening quote and ends after the closing one. `escaped` is set when the
 * string holds an escape. Returns 0 when not proven. */
static int string(Scan *s, int *escaped) {
    const unsigned char *p = s->p + 1;
    const unsigned char *end = s->end;
    for (;;) {
#if defined(WORD) && WORD == 16
        if (end - p >= 16) {
            unsigned special = special_bytes(p);
            if (special == 0) {
                p += 16;
                continue;
            }
            p += __builtin_ctz(special);
        }
#elif defined(WORD)
        if (end - p >= 8) {
            uint64_t special = special_bytes(p);
            if (special == 0) {
                p += 8;
                continue;
            }
            p += __builtin_ctzll(special) >> 3;
        }
#endif
        while (p < end && !is_special(*p)) p++;
        if (p >= end) return 0;
        unsigned char c = *p;
        if (c == '"') {
            s->p = p + 1;
            return 1;
        }
        if (c == '\\') {
            *escaped = 1;
            if (end - p < 2) return 0;
            unsigned char e = p[1];
            if (e == 'u') {
                if (end - p < 6) return 0;
                int code = 0;
                for (int i = 2; i < 6; i++) {
                    int digit = hex_digit(p[i]);
                    if (digit < 0) return 0;
                    code = code * 16 + digit;
                }
                if (code >= 0xD800 && code <= 0xDFFF) return 0;
                p += 6;
            } else if (e == '"' || e == '\\' || e == '/' || e == 'b' || e == 'f' || e == 'n' || e == 'r' ||
                       e == 't') {
                p += 2;
            } else {
                return 0;
            }
        } else if (c < 0x20) {
            return 0;
        } else {
            Py_ssize_t length = utf8_length(p, end);
            if (length == 0) return 0;
            p += length;
        }
    }
}

static Py_ssize_t digit_run(const unsigned char *p, const unsigned char *end) {
    const unsigned char *start = p;
    while (p < end && *p >= '0' && *p <= '9') p++;
    return p - start;
}

/* A number without a run of more than MAX_DIGIT_RUN digits, and without exponent: the number ends
 * before an 'e', where its object or array then expects ',' or its end, so the text is not proven. */
static int number(Scan *s) {
    const unsigned char *p = s->p;
    const unsigned char *end = s->end;
    if (*p == '-') p++;
    Py_ssize_t run = digit_run(p, end);
    if (run == 0 || run > MAX_DIGIT_RUN || (run > 1 && *p == '0')) return 0;
    p += run;
    if (p < end && *p == '.') {
        p++;
        run = digit_run(p, end);
        if (run == 0 || run > MAX_DIGIT_RUN) return 0;
        p += run;
    }
    s->p = p;
    return 1;
}

static int literal(Scan *s, const char *word, Py_ssize_t length) {
    if (s->end - s->p < length || memcmp(s->p, word, (size_t)length) != 0) return 0;
    s->p += length;
    return 1;
}

/* Steps over the opening '{' or '[' at s->p and the space after it; true when `close` follows at
 * once (the container is empty, and is stepped over too). */
static int opened_empty(Scan *s, unsigned char close) {
    s->p++;
    skip_space(s);
    if (*s->p != close) return 0;
    s->p++;
    return 1;
}

/* After an item of an object or array: 1 when a ',' says another follows (s->p is at it), 0 when
 * `close` ends the container (stepped over), -1 when neither (not proven). */
static int after_item(Scan *s, unsigned char close) {
    skip_space(s);
    if (*s->p == ',') {
        s->p++;
        skip_space(s);
        return 1;
    }
    if (*s->p != close) return -1;
    s->p++;
    return 0;
}

/* Whether the key at `start` is one of the object's earlier keys, those from `first` on. `seen` has
 * a bit for each earlier key's filter bit (from its length and last byte): most keys skip the
 * comparisons. */
static int repeated(Scan *s, Py_ssize_t first, const unsigned char *start, Py_ssize_t length, uint64_t *seen) {
    uint64_t bit = (uint64_t)1 << ((length * 7 + (length ? start[length - 1] : 0)) & 63);
    if (*seen & bit) {
        for (Py_ssize_t i = first; i < s->open_keys; i++) {
            if (s->keys[i].length == length && memcmp(s->keys[i].start, start, (size_t)length) == 0) return 1;
        }
    }
    *seen |= bit;
    return 0;
}

static int object(Scan *s, int depth) {
    Py_ssize_t first = s->open_keys;
    uint64_t seen = 0;
    if (opened_empty(s, '}')) return 1;
    for (;;) {
        if (*s->p != '"') return 0;
        const unsigned char *start = s->p + 1;
        int escaped = 0;
        if (!string(s, &escaped) || escaped) return 0;
        Py_ssize_t length = s->p - 1 - start;
        if (s->open_keys - first >= MAX_KEYS || s->open_keys >= MAX_OPEN_KEYS) return 0;
        if (repeated(s, first, start, length, &seen)) return 0;
        s->keys[s->open_keys].start = start;
        s->keys[s->open_keys].length = length;
        s->open_keys++;
        skip_space(s);
        if (*s->p != ':') return 0;
        s->p++;
        skip_space(s);
        if (!value(s, depth)) return 0;
        int next = after_item(s, '}');
        if (next < 0) return 0;
        if (next == 0) {
            s->open_keys = first;
            return 1;
        }
    }
}

static int array(Scan *s, int depth) {
    if (opened_empty(s, ']')) return 1;
    for (;;) {
        if (!value(s, depth)) return 0;
        int next = after_item(s, ']');
        if (next <= 0) return next == 0;
    }
}

/* One value at s->p (no leading space); `depth` counts the objects and arrays around it. */
static int value(Scan *s, int depth) {
    unsigned char c = *s->p; /* the NUL after the data is no value */
    int escaped = 0;
    switch (c) {
        case '{':
            return depth < MAX_DEPTH && object(s, depth + 1);
        case '[':
            return depth < MAX_DEPTH && array(s, depth + 1);
        case '"':
            return string(s, &escaped);
        case 't':
            return literal(s, "true", 4);
        case 'f':
            return literal(s, "false", 5);
        case 'n':
            return literal(s, "null", 4);
        default:
            if (c == '-' || (c >= '0' && c <= '9')) return number(s);
            return 0;
    }
}

static PyObject *unambiguous_object(PyObject *module, PyObject *text) {
    (void)module;
    if (!PyBytes_Check(text)) {
        PyErr_SetString(PyExc_TypeError, "unambiguous_object() takes bytes");
        return NULL;
    }
    Scan s;
    s.p = (const unsigned char *)PyBytes_AS_STRING(text);
    s.end = s.p + PyBytes_GET_SIZE(text);
    s.open_keys = 0;
    skip_space(&s);
    int proven = *s.p == '{' && value(&s, 0);
    if (proven) {
        skip_space(&s);
        proven = s.p == s.end;
    }
    return PyBool_FromLong(proven);
}

static PyMethodDef methods[] = {
    {"unambiguous_object", unambiguous_object, METH_O,
     "True when the bytes are one JSON object every parser reads alike (see the module source); "
     "False when that is not proven."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "auditor._unambiguous",
    .m_doc = "Proof that a JSON line reads alike in every parser.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__unambiguous(void) { return PyModule_Create(&module); }
