/*
** tui/chat.h — wrapping a prompt in a model's chat format (--chat).
**
** The family is recognised from the GGUF's tokenizer.chat_template by its
** marker tokens; moescope does not run the Jinja template itself, it writes
** the one-turn conversation (optional system message, the user's prompt, the
** assistant's turn opened) the way each family's template renders it.
*/
#ifndef TUI_CHAT_H
#define TUI_CHAT_H

#include "engine/eng.h"

typedef enum {
    CHAT_NONE = 0,
    CHAT_CHATML,    /* Qwen, many others: <|im_start|>role ... <|im_end|> */
    CHAT_HARMONY,   /* gpt-oss: <|start|>role<|message|> ... <|end|> */
    CHAT_GLM4,      /* GLM-4.5: [gMASK]<sop><|user|> ... <|assistant|> */
    CHAT_LLAMA3,    /* <|start_header_id|>role<|end_header_id|> ... <|eot_id|> */
    CHAT_MISTRAL,   /* [INST] ... [/INST] */
    CHAT_PHI3,      /* <|user|> ... <|end|> <|assistant|> */
} ChatFamily;

const char *chat_family_name(ChatFamily f);

/* Recognise a template's family; CHAT_NONE if it is none of the above. */
ChatFamily chat_detect(const char *tmpl, size_t len);

/* The formatted text (malloc'd) for one user turn; system may be NULL.
** bos: the BOS token's text (for the families whose template writes it),
** or NULL. */
char *chat_format(ChatFamily f, const char *system, const char *prompt, const char *bos);

/* Format prompt for model m.  On success returns the text (malloc'd) and sets
** *skip_bos when the text already begins with the BOS token; on failure
** returns NULL with a message in err naming the model and the template. */
char *chat_apply(const EngModel *m, const char *system, const char *prompt, int *skip_bos,
                 char *err, size_t errcap);

#endif
