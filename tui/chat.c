/*
** tui/chat.c — chat formats of the model families moescope supports.
*/
#include "tui/chat.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *chat_family_name(ChatFamily f)
{
    switch (f) {
    case CHAT_NONE: return "none";
    case CHAT_CHATML: return "ChatML";
    case CHAT_HARMONY: return "Harmony (gpt-oss)";
    case CHAT_GLM4: return "GLM-4";
    case CHAT_LLAMA3: return "Llama-3";
    case CHAT_MISTRAL: return "Mistral [INST]";
    case CHAT_PHI3: return "Phi-3";
    }
    return "?";
}

static int has(const char *t, size_t n, const char *needle)
{
    size_t k = strlen(needle);
    for (size_t i = 0; i + k <= n; i++)
        if (t[i] == needle[0] && memcmp(t + i, needle, k) == 0)
            return 1;
    return 0;
}

ChatFamily chat_detect(const char *t, size_t n)
{
    if (!t || !n)
        return CHAT_NONE;
    if (has(t, n, "<|start|>") && has(t, n, "<|message|>"))
        return CHAT_HARMONY;
    if (has(t, n, "<|im_start|>"))
        return CHAT_CHATML;
    if (has(t, n, "<|start_header_id|>"))
        return CHAT_LLAMA3;
    if (has(t, n, "[gMASK]"))
        return CHAT_GLM4;
    if (has(t, n, "<|user|>") && has(t, n, "<|assistant|>") && has(t, n, "<|end|>"))
        return CHAT_PHI3;
    if (has(t, n, "[INST]"))
        return CHAT_MISTRAL;
    return CHAT_NONE;
}

typedef struct {
    char *p;
    size_t n, cap;
    int oom;
} Sb;

static void sb_add(Sb *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (k < 0 || b->oom)
        return;
    if (b->n + (size_t)k + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        while (cap < b->n + (size_t)k + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(b->p + b->n, b->cap - b->n, fmt, ap);
    va_end(ap);
    b->n += (size_t)k;
}

char *chat_format(ChatFamily f, const char *sys, const char *prompt, const char *bos)
{
    Sb b = { 0 };
    int s = sys && *sys;
    switch (f) {
    case CHAT_CHATML:
        if (s)
            sb_add(&b, "<|im_start|>system\n%s<|im_end|>\n", sys);
        sb_add(&b, "<|im_start|>user\n%s<|im_end|>\n<|im_start|>assistant\n", prompt);
        break;
    case CHAT_HARMONY:
        sb_add(&b, "<|start|>system<|message|>You are ChatGPT, a large language model trained by "
                   "OpenAI.\nKnowledge cutoff: 2024-06\n\nReasoning: medium\n\n# Valid channels: "
                   "analysis, commentary, final. Channel must be included for every message.<|end|>");
        if (s)
            sb_add(&b, "<|start|>developer<|message|># Instructions\n\n%s<|end|>", sys);
        sb_add(&b, "<|start|>user<|message|>%s<|end|><|start|>assistant", prompt);
        break;
    case CHAT_GLM4:
        sb_add(&b, "[gMASK]<sop>");
        if (s)
            sb_add(&b, "<|system|>\n%s", sys);
        sb_add(&b, "<|user|>\n%s<|assistant|>\n", prompt);
        break;
    case CHAT_LLAMA3:
        sb_add(&b, "%s", bos ? bos : "<|begin_of_text|>");
        if (s)
            sb_add(&b, "<|start_header_id|>system<|end_header_id|>\n\n%s<|eot_id|>", sys);
        sb_add(&b, "<|start_header_id|>user<|end_header_id|>\n\n%s<|eot_id|>"
                   "<|start_header_id|>assistant<|end_header_id|>\n\n", prompt);
        break;
    case CHAT_MISTRAL:
        if (s)
            sb_add(&b, "[INST] %s\n\n%s [/INST]", sys, prompt);
        else
            sb_add(&b, "[INST] %s [/INST]", prompt);
        break;
    case CHAT_PHI3:
        sb_add(&b, "%s", bos ? bos : "");
        if (s)
            sb_add(&b, "<|system|>\n%s<|end|>\n", sys);
        sb_add(&b, "<|user|>\n%s<|end|>\n<|assistant|>\n", prompt);
        break;
    case CHAT_NONE:
        return NULL;
    }
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

char *chat_apply(const EngModel *m, const char *sys, const char *prompt, int *skip_bos, char *err,
                 size_t errcap)
{
    size_t n = 0;
    const char *t = eng_model_chat_template(m, &n);
    *skip_bos = 0;
    if (!t) {
        snprintf(err, errcap, "--chat: the model has no tokenizer.chat_template (a base model?); "
                              "run without --chat");
        return NULL;
    }
    ChatFamily f = chat_detect(t, n);
    if (f == CHAT_NONE) {
        snprintf(err, errcap, "--chat: tokenizer.chat_template is not a format moescope knows "
                              "(supported: ChatML, Harmony, GLM-4, Llama-3, Mistral, Phi-3); it "
                              "begins '%.*s'", (int)(n < 60 ? n : 60), t);
        for (char *p = err; *p; p++)
            if ((unsigned char)*p < 0x20)
                *p = ' ';
        return NULL;
    }
    const EngInfo *I = eng_model_info(m);
    char bos[128] = { 0 };
    if (I->bos_id >= 0) {
        size_t bl = 0;
        const char *bs = eng_token_str(m, I->bos_id, &bl);
        if (bs && bl < sizeof bos)
            memcpy(bos, bs, bl);
    }
    char *out = chat_format(f, sys, prompt, bos[0] ? bos : NULL);
    if (!out) {
        snprintf(err, errcap, "out of memory");
        return NULL;
    }
    if (bos[0] && strncmp(out, bos, strlen(bos)) == 0)
        *skip_bos = 1;
    return out;
}
