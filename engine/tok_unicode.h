/*
** engine/tok_unicode.h — Unicode facts the tokenizers need (internal).
**
** tok_ucp_flags() gives a codepoint's general-category group and whether it
** has the White_Space property, from tables generated out of the Unicode
** Character Database by tools/gen_unicode_tables.py (engine/tok_unicode.c).
** Codepoints past U+10FFFF get 0 (no flag at all).
*/
#ifndef ENG_TOK_UNICODE_H
#define ENG_TOK_UNICODE_H

#include <stddef.h>
#include <stdint.h>

enum {
    TOK_U_UNDEF   = 0x01,   /* Cn: unassigned */
    TOK_U_NUMBER  = 0x02,   /* \p{N} */
    TOK_U_LETTER  = 0x04,   /* \p{L} */
    TOK_U_SEP     = 0x08,   /* \p{Z} */
    TOK_U_MARK    = 0x10,   /* \p{M} */
    TOK_U_PUNCT   = 0x20,   /* \p{P} */
    TOK_U_SYMBOL  = 0x40,   /* \p{S} */
    TOK_U_CONTROL = 0x80,   /* \p{C} except Cn */
    TOK_U_SPACE   = 0x100,  /* White_Space property (\s) */
};

unsigned tok_ucp_flags(uint32_t cp);     /* can't fail */
const char *tok_unicode_version(void);   /* e.g. "15.0.0" */
/* 1 if cp is in the letter class of the deepseek-llm pre-tokenizer regex. */
int tok_dsllm_letter(uint32_t cp);

#endif
