/*
** engine/tok_pre.h — BPE pre-tokenizers (internal to the tokenizer).
**
** A pre-tokenizer cuts text into words before byte-level BPE runs on each
** word.  llama.cpp does it with one or more regexes applied in turn: each
** regex splits every current word into its matches and the text between
** them.  Here each regex is a hand-written matcher over codepoints with the
** same leftmost-first (backtracking) semantics, including llama.cpp's
** quirks (ASCII '~' is not \p{S}; non-ASCII whitespace is seen as \v by the
** std::regex it uses).
*/
#ifndef ENG_TOK_PRE_H
#define ENG_TOK_PRE_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    TOK_PRE_DEFAULT = 0,
    TOK_PRE_GPT2,
    TOK_PRE_LLAMA3,
    TOK_PRE_QWEN2,
    TOK_PRE_DEEPSEEK_LLM,
    TOK_PRE_DEEPSEEK3,
    TOK_PRE_GPT4O,
    TOK_PRE_STARCODER,
    TOK_PRE_COUNT
} TokPreKind;

typedef struct {
    const char *name;     /* tokenizer.ggml.pre value */
    TokPreKind kind;
    int ignore_merges;    /* a word that is a whole token skips BPE */
    int add_bos;          /* default for tokenizer.ggml.add_bos_token */
    int no_bos;           /* the default BOS id is "none" (glm4) */
} TokPreInfo;

/* The entry for a pre-tokenizer name, or NULL if it is not supported. */
const TokPreInfo *tok_pre_find(const char *name, size_t len);

/* Comma-separated list of the supported names into buf (truncated to cap). */
void tok_pre_names(char *buf, size_t cap);

/* Split n codepoints into words.  On success returns the number of words and
** sets *lens (malloc'd, caller frees) to their lengths in codepoints, in
** order, summing to n; returns -1 on allocation failure. */
long tok_pre_split(TokPreKind kind, const uint32_t *cp, size_t n, size_t **lens);

#endif
