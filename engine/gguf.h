/*
** engine/gguf.h — GGUF v2/v3 reader over a read-only memory mapping.
**
** A GGUF file is: magic "GGUF", version, tensor count, key/value count, the
** key/value pairs, the tensor infos (name, dims, type, offset), padding to
** general.alignment, then the tensor data.  Everything in it is untrusted:
** gguf_parse() checks every count, length, type and offset against the bytes
** actually present before it believes it, and fails with its own GgufError
** code and a message naming the field, the value and what was expected.
**
** After a successful parse all strings and tensor data point into the
** caller's buffer (the mapping), which must outlive the Gguf.
*/
#ifndef ENG_GGUF_H
#define ENG_GGUF_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    GGUF_OK = 0,
    GGUF_E_NOMEM,
    GGUF_E_IO,
    GGUF_E_TRUNCATED,       /* a field runs past the end of the file */
    GGUF_E_MAGIC,
    GGUF_E_VERSION,
    GGUF_E_N_TENSORS,       /* tensor count larger than the file allows */
    GGUF_E_N_KV,            /* key/value count larger than the file allows */
    GGUF_E_STRING_LEN,      /* string length past the end of the file */
    GGUF_E_KEY_EMPTY,
    GGUF_E_KEY_DUP,
    GGUF_E_VALUE_TYPE,      /* value type out of range */
    GGUF_E_ARRAY_TYPE,      /* array element type out of range / nested */
    GGUF_E_ARRAY_LEN,       /* array longer than the file allows */
    GGUF_E_ALIGNMENT,       /* general.alignment not a u32 power of two */
    GGUF_E_NAME_LEN,        /* tensor name empty or >= 64 bytes */
    GGUF_E_NAME_DUP,
    GGUF_E_N_DIMS,          /* n_dims not in 1..4 */
    GGUF_E_DIM,             /* a dimension < 0 */
    GGUF_E_OVERFLOW,        /* element count or byte size overflows */
    GGUF_E_TYPE,            /* unknown tensor type */
    GGUF_E_BLOCK,           /* ne[0] not a multiple of the block size */
    GGUF_E_OFFSET_ALIGN,    /* tensor offset not aligned */
    GGUF_E_OFFSET_RANGE,    /* tensor data outside the file */
    GGUF_E_OVERLAP,         /* two tensors' data overlap */
    GGUF_E_COUNT
} GgufError;

typedef enum {
    GGUF_TYPE_UINT8 = 0, GGUF_TYPE_INT8, GGUF_TYPE_UINT16, GGUF_TYPE_INT16,
    GGUF_TYPE_UINT32, GGUF_TYPE_INT32, GGUF_TYPE_FLOAT32, GGUF_TYPE_BOOL,
    GGUF_TYPE_STRING, GGUF_TYPE_ARRAY, GGUF_TYPE_UINT64, GGUF_TYPE_INT64,
    GGUF_TYPE_FLOAT64, GGUF_TYPE_COUNT
} GgufType;

typedef struct {
    const char *ptr;        /* into the mapping; NOT NUL-terminated */
    uint64_t len;
} GgufStr;

typedef struct {
    GgufStr key;
    uint32_t type;          /* GgufType */
    uint32_t arr_type;      /* element type when type == ARRAY */
    uint64_t n;             /* array length (1 for scalars) */
    const uint8_t *data;    /* scalar value or first array element (may be
                               unaligned: read with the accessors) */
    GgufStr *strs;          /* STRING scalar (1) or STRING array (n) */
} GgufKV;

#define GGUF_MAX_NAME 64
#define GGUF_MAX_DIMS 4

typedef struct {
    char name[GGUF_MAX_NAME];   /* NUL-terminated copy */
    uint32_t n_dims;
    int64_t ne[GGUF_MAX_DIMS];  /* unused dims are 1 */
    uint32_t type;
    uint64_t offset;            /* relative to the data section */
    uint64_t nbytes;
    int64_t nelem;
    const uint8_t *data;        /* into the mapping */
} GgufTensor;

typedef struct {
    uint32_t version;
    uint32_t alignment;
    uint64_t n_kv, n_tensors;
    GgufKV *kv;
    GgufTensor *tensors;
    uint64_t data_offset;       /* start of the data section */
    const uint8_t *base;
    uint64_t size;
    /* set by gguf_open() only */
    void *map;
    uint64_t map_size;
} Gguf;

/* Parse n bytes at buf.  On success returns GGUF_OK and *out (free with
** gguf_free); on failure returns the error and writes a message to err
** (errcap bytes).  buf must stay valid while *out is used. */
GgufError gguf_parse(const uint8_t *buf, uint64_t n, Gguf **out,
                     char *err, size_t errcap);

/* mmap path read-only and parse it.  GGUF_E_IO (message starting with the
** path) when it can't be opened, is not a regular file (directory, FIFO,
** device: never blocks), is empty, or can't be mapped; otherwise the
** parse result, its message prefixed with the path.  The mapping belongs to
** *out.  A file shrunk by another process while mapped can still raise
** SIGBUS on access: the parser cannot guard against that. */
GgufError gguf_open(const char *path, Gguf **out, char *err, size_t errcap);

/* Free a Gguf (and unmap it if gguf_open made the mapping).  Accepts NULL. */
void gguf_free(Gguf *g);

const char *gguf_error_name(GgufError e);
const char *gguf_type_name(uint32_t t);

const GgufKV *gguf_find(const Gguf *g, const char *key);
const GgufTensor *gguf_tensor(const Gguf *g, const char *name);

/* Typed getters.  Return 1 and set *out when key exists with a compatible
** type (any integer type for _int, F32/F64 for _float, STRING for _str);
** 0 when missing; -1 when present with an incompatible type or value. */
int gguf_get_int(const Gguf *g, const char *key, int64_t *out);
int gguf_get_float(const Gguf *g, const char *key, double *out);
int gguf_get_bool(const Gguf *g, const char *key, int *out);
int gguf_get_str(const Gguf *g, const char *key, GgufStr *out);

/* Array element access.  Return 0 when kv is not an array, i >= kv->n or the
** elements are strings.  _int reads integer and bool elements (u64 values
** above INT64_MAX come back as INT64_MAX) and returns 0 for float elements;
** _float reads float elements and converts integer ones. */
int64_t gguf_arr_int(const GgufKV *kv, uint64_t i);
double gguf_arr_float(const GgufKV *kv, uint64_t i);

/* Compare a GgufStr to a C string. */
int gguf_str_eq(GgufStr s, const char *c);

#endif
