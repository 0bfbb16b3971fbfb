/*
** engine/gguf_write.h — writing GGUF v3 files (moescope synth).
**
** Keys and tensor declarations are collected in memory; eng_gw_write() then
** writes the header and streams each tensor's bytes from a fill callback,
** so a multi-gigabyte model never has to be held in memory.
*/
#ifndef ENG_GGUF_WRITE_H
#define ENG_GGUF_WRITE_H

#include <stddef.h>
#include <stdint.h>

typedef struct EngGw EngGw;

/* Fill buf (nbytes) with tensor i's data; return 0, or -1 to abort. */
typedef int (*EngGwFill)(void *user, int i, uint8_t *buf, uint64_t nbytes);

EngGw *eng_gw_new(void);                /* NULL when out of memory */
void eng_gw_free(EngGw *w);             /* accepts NULL */
/* Keys (later calls with the same key are the caller's bug). */
void eng_gw_u32(EngGw *w, const char *key, uint32_t v);
void eng_gw_f32(EngGw *w, const char *key, float v);
void eng_gw_bool(EngGw *w, const char *key, int v);
void eng_gw_str(EngGw *w, const char *key, const char *v);
void eng_gw_arr_str(EngGw *w, const char *key, const char *const *v, int n);
void eng_gw_arr_f32(EngGw *w, const char *key, const float *v, int n);
void eng_gw_arr_i32(EngGw *w, const char *key, const int32_t *v, int n);
/* A key whose value bytes (GGUF encoding of `type`, for arrays including
** the element type and count) the caller already has. */
void eng_gw_raw(EngGw *w, const char *key, uint32_t type, const void *val, size_t nbytes);
/* Declare a tensor; returns its index, or -1 (bad shape/type, or OOM). */
int eng_gw_tensor(EngGw *w, const char *name, uint32_t type, int n_dims, const int64_t *ne);
uint64_t eng_gw_tensor_bytes(const EngGw *w, int i);
/* Type and element count of tensor i; -1 if there is no tensor i. */
int eng_gw_tensor_info(const EngGw *w, int i, uint32_t *type, int64_t *nel);
uint64_t eng_gw_total_bytes(const EngGw *w);   /* the file size */
/* Write the file (to path.tmp, then rename).  0, or -1 with err filled. */
int eng_gw_write(EngGw *w, const char *path, EngGwFill fill, void *user, char *err, size_t errcap);

#endif
