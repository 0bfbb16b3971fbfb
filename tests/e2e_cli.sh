#!/usr/bin/env bash
# End-to-end checks of the command line on the shipped sample: the outputs
# users rely on, and clear errors (non-zero exit, the culprit named) for bad
# input.  Run by `make test` with $MOESCOPE set to the binary.
set -u
bin=${MOESCOPE:-./moescope}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }

# expect_fail NAME EXIT_CODE PATTERN -- command...: must exit with that code
# and print PATTERN on stderr
expect_fail() {
    local name=$1 code=$2 pat=$3
    shift 4
    "$@" > "$tmp/out" 2> "$tmp/err"
    local rc=$?
    if [ "$rc" -ne "$code" ]; then bad "$name: exit $rc, expected $code ($(head -c 300 "$tmp/err"))"; return; fi
    if ! grep -q -- "$pat" "$tmp/err"; then bad "$name: stderr lacks '$pat': $(head -c 300 "$tmp/err")"; return; fi
    ok
}

# the sample answers like llama.cpp
out=$("$bin" run -p "347 + 128 =" -n 6 --greedy --no-db)
if [ "$(printf '%s' "$out" | head -n 1 | tr -d ' ')" = "475" ]; then ok; else bad "347 + 128 = gave '$out'"; fi

# every domain continues in its own domain
de=$("$bin" run -p "Die Option --help zeigt" -n 12 --greedy --no-db)
case "$de" in *Hilfe*|*die*|*der*|*und*) ok ;; *) bad "German prompt continued as '$de'" ;; esac
py=$("$bin" run -p "def __init__(self" -n 12 --greedy --no-db)
case "$py" in *self*|*"("*|*:*) ok ;; *) bad "Python prompt continued as '$py'" ;; esac

# same seed, same text; the database records it
a=$("$bin" run -p "And God said" -n 20 --seed 7 --db "$tmp/a.db" --tag t)
b=$("$bin" run -p "And God said" -n 20 --seed 7 --db "$tmp/a.db" --tag t)
[ "$a" = "$b" ] && ok || bad "same seed gave different text"
if command -v sqlite3 > /dev/null; then
    n=$(sqlite3 "$tmp/a.db" "select count(*) from runs where status='complete'")
    [ "$n" = 2 ] && ok || bad "expected 2 complete runs, got '$n'"
fi

# an intervention changes the routing record and is listed
"$bin" run -p "347 + 128 =" -n 6 --greedy --db "$tmp/b.db" --disable '*:3' --tag s > /dev/null && ok || bad "run with --disable failed"

# -f with escapes; -q prints only continuations
printf '12 * 7 =\n347 + 128 =\\n\n' > "$tmp/p.txt"
n=$("$bin" run -f "$tmp/p.txt" -n 2 --greedy --no-db | grep -c '^### ')
[ "$n" = 2 ] && ok || bad "-f with 2 prompts printed $n headers"

# timings lines, llama.cpp style
"$bin" run -p "x" -n 4 --no-db --timings 2> "$tmp/t" > /dev/null
grep -q '^prompt: [0-9]* tokens, [0-9.]* t/s$' "$tmp/t" && grep -q '^decode: [0-9]* tokens, [0-9.]* t/s$' "$tmp/t" && ok || bad "--timings: $(cat "$tmp/t")"

# eval / ppl output contracts
head -n 20 samples/prompts/math.tsv > "$tmp/m.tsv"
"$bin" eval --tsv "$tmp/m.tsv" > "$tmp/e"
head -n 1 "$tmp/e" | grep -Eq '^accuracy: [0-9]+\.[0-9] % \([0-9]+/20\)$' && ok || bad "eval first line: $(head -n 1 "$tmp/e")"
sed -n 2p "$tmp/e" | grep -q '95% interval' && ok || bad "eval interval line: $(sed -n 2p "$tmp/e")"
head -n 5 samples/prompts/english.txt > "$tmp/en.txt"
"$bin" ppl -f "$tmp/en.txt" > "$tmp/p"
head -n 1 "$tmp/p" | grep -Eq '^perplexity: [0-9]+\.[0-9]{2}$' && ok || bad "ppl first line: $(head -n 1 "$tmp/p")"

# info
"$bin" info samples/sample-q8_0.gguf > "$tmp/i"
grep -q 'architecture  olmoe' "$tmp/i" && grep -q '16 per layer, top-2' "$tmp/i" && ok || bad "info: $(cat "$tmp/i")"

# synth: every architecture writes a file that loads and runs
for arch in olmoe llama qwen2moe qwen3moe deepseek2 glm4moe gpt-oss; do
    extra=""
    case $arch in deepseek2|glm4moe) extra="--dense 1 --shared 1" ;; esac
    # shellcheck disable=SC2086
    if "$bin" synth --arch $arch --layers 2 --experts 8 --k 2 --embd 64 --ff 32 --heads 4 --vocab 600 $extra -o "$tmp/$arch.gguf" > /dev/null 2>&1 &&
       "$bin" run -m "$tmp/$arch.gguf" -p "abc" -n 4 --no-db > /dev/null; then ok; else bad "synth $arch"; fi
done
"$bin" synth --from samples/sample-q8_0.gguf --type f16 -o "$tmp/f16.gguf" > /dev/null 2>&1
out=$("$bin" run -m "$tmp/f16.gguf" -p "347 + 128 =" -n 6 --greedy --no-db)
[ "$(printf '%s' "$out" | head -n 1 | tr -d ' ')" = "475" ] && ok || bad "F16 copy of the sample: '$out'"

# errors name the culprit
expect_fail "layer out of range" 2 "layer 9 out of range 0..5" -- "$bin" run -p x --no-db --disable 9:1
expect_fail "expert out of range" 2 "expert 16 out of range 0..15" -- "$bin" run -p x --no-db --force 2:16
expect_fail "malformed L:E" 2 "'2-3' malformed" -- "$bin" run -p x --no-db --disable 2-3
expect_fail "bad bias" 2 "bias 'abc' is not a finite number" -- "$bin" run -p x --no-db --bias 1:2=abc
expect_fail "bad scope" 2 "expected all, prompt, gen or from:T" -- "$bin" run -p x --no-db --disable 1:2 --scope sometimes
expect_fail "top-k range" 2 "out of range 1..16" -- "$bin" run -p x --no-db --top-k 17
expect_fail "missing model" 1 "nope.gguf: cannot open" -- "$bin" run -m "$tmp/nope.gguf" -p x --no-db
printf 'not a model at all' > "$tmp/junk.gguf"
expect_fail "not a gguf" 1 "magic" -- "$bin" info "$tmp/junk.gguf"
head -c 5000 samples/sample-q8_0.gguf > "$tmp/trunc.gguf"
expect_fail "truncated gguf" 1 "trunc.gguf" -- "$bin" info "$tmp/trunc.gguf"
expect_fail "no prompt" 2 "exactly one of -p TEXT or -f FILE" -- "$bin" run --no-db
expect_fail "bad escape" 1 "unknown escape" -- "$bin" run -f <(printf 'a\\qb\n') --no-db
expect_fail "unknown option" 2 "unknown argument '--frobnicate'" -- "$bin" run -p x --frobnicate
expect_fail "bad tsv" 1 "no TAB" -- "$bin" eval --tsv <(printf 'no tab here\n')
expect_fail "not a database" 1 "not a" -- "$bin" run -p x --db "$tmp/junk.gguf"
expect_fail "unknown command" 2 "unknown command 'frob'" -- "$bin" frob

echo "e2e_cli: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
