/*
** tests/test_chat.c — chat formats: family detection from real templates,
** the exact text written, and special tokens parsed as single tokens.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "engine/gguf.h"
#include "engine/tok.h"
#include "tui/tui.h"

/* Openings of the templates the families ship (abridged). */
static const char *qwen3 = "{%- if tools %}\n    {{- '<|im_start|>system\\n' }}...{{- '<|im_start|>' + message.role + '\\n' + content + '<|im_end|>' + '\\n' }}";
static const char *oss = "{#- Harmony #}{{- \"<|start|>system<|message|>\" }}...{{- \"<|start|>assistant\" }}{{- \"<|channel|>final<|message|>\" }}";
static const char *glm = "[gMASK]<sop>{%- if tools -%}<|system|>\n...{{- '<|user|>' }}...<|assistant|>";
static const char *llama3 = "{{- bos_token }}...<|start_header_id|>system<|end_header_id|>\n\n...<|eot_id|>";
static const char *mistral = "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}";
static const char *phi3 = "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') %}{{'<|user|>' + '\\n' + message['content'] + '<|end|>' + '\\n' + '<|assistant|>' + '\\n'}}";

static void test_chat_detect_known_templates_families(void **s)
{
    (void)s;
    assert_int_equal(chat_detect(qwen3, strlen(qwen3)), CHAT_CHATML);
    assert_int_equal(chat_detect(oss, strlen(oss)), CHAT_HARMONY);
    assert_int_equal(chat_detect(glm, strlen(glm)), CHAT_GLM4);
    assert_int_equal(chat_detect(llama3, strlen(llama3)), CHAT_LLAMA3);
    assert_int_equal(chat_detect(mistral, strlen(mistral)), CHAT_MISTRAL);
    assert_int_equal(chat_detect(phi3, strlen(phi3)), CHAT_PHI3);
    const char *odd = "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}";
    assert_int_equal(chat_detect(odd, strlen(odd)), CHAT_NONE);
    assert_int_equal(chat_detect("", 0), CHAT_NONE);
}

static void test_chat_format_writes_one_turn_exactly(void **s)
{
    (void)s;
    char *t = chat_format(CHAT_CHATML, "Be brief.", "Hi", NULL);
    assert_string_equal(t, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                           "<|im_start|>assistant\n");
    free(t);
    t = chat_format(CHAT_CHATML, NULL, "Hi", NULL);
    assert_string_equal(t, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
    free(t);
    t = chat_format(CHAT_LLAMA3, NULL, "Hi", "<|begin_of_text|>");
    assert_string_equal(t, "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
                           "<|start_header_id|>assistant<|end_header_id|>\n\n");
    free(t);
    t = chat_format(CHAT_MISTRAL, NULL, "Hi", "<s>");
    assert_string_equal(t, "[INST] Hi [/INST]");
    free(t);
    t = chat_format(CHAT_GLM4, NULL, "Hi", NULL);
    assert_string_equal(t, "[gMASK]<sop><|user|>\nHi<|assistant|>\n");
    free(t);
    t = chat_format(CHAT_HARMONY, "Answer in French.", "Hi", NULL);
    assert_non_null(strstr(t, "<|start|>developer<|message|># Instructions\n\nAnswer in French.<|end|>"));
    assert_non_null(strstr(t, "<|start|>user<|message|>Hi<|end|><|start|>assistant"));
    assert_int_equal(strncmp(t, "<|start|>system<|message|>", 26), 0);
    free(t);
    t = chat_format(CHAT_PHI3, NULL, "Hi", "<s>");
    assert_string_equal(t, "<s><|user|>\nHi<|end|>\n<|assistant|>\n");
    free(t);
    assert_null(chat_format(CHAT_NONE, NULL, "Hi", NULL));
}

/* With the Phi-3 vocabulary, the formatted turn tokenizes with <|user|>,
** <|end|> and <|assistant|> as single control tokens. */
static void test_chat_phi3_special_tokens_parsed_single(void **s)
{
    (void)s;
    Gguf *g = NULL;
    char e[256];
    assert_int_equal(gguf_open("tests/data/tokenizer/ggml-vocab-phi-3.gguf", &g, e, sizeof e), GGUF_OK);
    EngErr err = { 0 };
    EngTok *t = eng_tok_new(g, &err);
    assert_non_null(t);
    char *txt = chat_format(CHAT_PHI3, NULL, "Hello", NULL);
    int32_t ids[64];
    int n = eng_tok_encode(t, txt, strlen(txt), 1, 1, ids, 64, &err);
    assert_true(n > 4 && n < 20);
    int users = 0, ends = 0, assts = 0;
    for (int i = 0; i < n; i++) {
        size_t l;
        const char *p = eng_tok_str(t, ids[i], &l);
        users += l == 8 && !memcmp(p, "<|user|>", 8);
        ends += l == 7 && !memcmp(p, "<|end|>", 7);
        assts += l == 13 && !memcmp(p, "<|assistant|>", 13);
    }
    assert_int_equal(users, 1);
    assert_int_equal(ends, 1);
    assert_int_equal(assts, 1);
    /* without parse_special the same text is plain characters */
    int n2 = eng_tok_encode(t, txt, strlen(txt), 1, 0, ids, 64, &err);
    assert_true(n2 > n + 6);
    free(txt);
    eng_tok_free(t);
    gguf_free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chat_detect_known_templates_families),
        cmocka_unit_test(test_chat_format_writes_one_turn_exactly),
        cmocka_unit_test(test_chat_phi3_special_tokens_parsed_single),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
