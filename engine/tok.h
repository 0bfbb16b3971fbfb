/*
** engine/tok.h — tokenizers built from a GGUF file's tokenizer.ggml.* keys.
**
** Two families, as llama.cpp implements them:
**   SPM  (tokenizer.ggml.model = "llama"): score-driven bigram merges over
**        UTF-8 characters, byte fallback to <0xNN> pieces, '▁' for spaces,
**        add_space_prefix.
**   BPE  (tokenizer.ggml.model = "gpt2"): byte-level BPE, merges by rank,
**        GPT-2 byte-to-unicode mapping, a regex pre-tokenizer chosen by
**        tokenizer.ggml.pre.
** Both honour add_bos/add_eos (add_special) and, when parse_special is set,
** split out the text of special (CONTROL / USER_DEFINED) tokens first.
*/
#ifndef ENG_TOK_H
#define ENG_TOK_H

#include "engine/eng.h"
#include "engine/gguf.h"

typedef struct EngTok EngTok;

/* Build the tokenizer from g's metadata.  The tokenizer copies what it
** needs (it does not keep pointers into g).  NULL + err on a missing or
** malformed key (named in the message), an unknown model or pre-tokenizer
** (the message lists the supported ones). */
EngTok *eng_tok_new(const Gguf *g, EngErr *err);
void eng_tok_free(EngTok *t);                       /* accepts NULL */

int eng_tok_n_vocab(const EngTok *t);
EngTokKind eng_tok_kind(const EngTok *t);
const char *eng_tok_pre(const EngTok *t);          /* "" for SPM */
int eng_tok_bos(const EngTok *t);                  /* -1 if none */
int eng_tok_eos(const EngTok *t);                  /* -1 if none */
int eng_tok_add_bos(const EngTok *t);
int eng_tok_is_eog(const EngTok *t, int32_t id);   /* end of generation */

/* Same contract as eng_tokenize() in eng.h. */
int eng_tok_encode(const EngTok *t, const char *text, size_t len,
                   int add_special, int parse_special,
                   int32_t *out, int cap, EngErr *err);
/* Same contract as eng_token_str() / eng_token_to_bytes() in eng.h. */
const char *eng_tok_str(const EngTok *t, int32_t id, size_t *len);
int eng_tok_to_bytes(const EngTok *t, int32_t id, char *buf, int cap);

#endif
