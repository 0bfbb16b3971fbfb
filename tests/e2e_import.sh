#!/usr/bin/env bash
# tests/e2e_import.sh — moetrace end to end: moescope runs → export --format
# moetrace → import giving the same routes and load; malformed traces refused
# with the database unchanged; tools/moetrace_convert.py fed vLLM's, SGLang's
# and transformers' outputs exactly as they write them (tests/convert_cases.py),
# imported, and the routes read back equal to the engines' routing.
set -euo pipefail
cd "$(dirname "$0")/.."
M=${MOESCOPE:-./moescope}
case "$M" in */*) ;; *) M=./$M ;; esac
T=$(mktemp -d /tmp/moescope-e2e-import-XXXXXX)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# The python for the converter: named, never "the first python3 on PATH"
# (that may be a pyenv or venv python without numpy).  Debian's has numpy and
# torch from python3-numpy and python3-torch (the packages the build installs).
PY=${MOESCOPE_PYTHON:-/usr/bin/python3}
if ! "$PY" -c 'import numpy, torch' 2> "$T/pyerr"; then
    fail "$PY cannot import numpy and torch ($(tail -1 "$T/pyerr")): apt-get install python3-numpy python3-torch, or set MOESCOPE_PYTHON to a python3 that has both"
fi

# ---- 1. round trip of our own runs through the CLI ---------------------------
"$M" run -p "The Lord is my shepherd" -n 10 --seed 3 --db "$T/a.db" --tag own >/dev/null
"$M" run -p "int main(void) {" -n 10 --greedy --db "$T/a.db" --tag own >/dev/null
"$M" export --db "$T/a.db" --tag own --format moetrace -o "$T/own" 2>/dev/null
"$M" import "$T/own" --db "$T/b.db" --tag back --vocab samples/sample-q8_0.gguf --quiet >/dev/null
"$M" export --db "$T/a.db" --tag own --format jsonl --what routes |
    sed 's/,"scores":\[[^]]*\]//' > "$T/ra"
"$M" export --db "$T/b.db" --tag back --format jsonl --what routes > "$T/rb"
cmp -s "$T/ra" "$T/rb" || fail "round trip: routes differ ($(diff "$T/ra" "$T/rb" | head -3))"
"$M" export --db "$T/a.db" --tag own --format csv --what load | cut -d, -f2- > "$T/la"
"$M" export --db "$T/b.db" --tag back --format csv --what load | cut -d, -f2- > "$T/lb"
cmp -s "$T/la" "$T/lb" || fail "round trip: load differs"
"$M" export --db "$T/a.db" --tag own --format jsonl --what tokens | cut -d, -f3-5 > "$T/pa"
"$M" export --db "$T/b.db" --tag back --format jsonl --what tokens | cut -d, -f3-5 > "$T/pb"
cmp -s "$T/pa" "$T/pb" || fail "round trip: token text from --vocab differs"
echo "round trip: $(wc -l < "$T/ra") routes identical, load identical"

# ---- 2. malformed traces: clear message, database untouched ---------------------
cp -r "$T/own" "$T/bad"
printf 'garbage' > "$T/bad/experts.npy"
sum_before=$(sha256sum "$T/b.db" | cut -d' ' -f1)
if "$M" import "$T/bad" --db "$T/b.db" --tag bad --quiet 2> "$T/err"; then fail "bad npy accepted"; fi
grep -q "experts.npy: npy magic" "$T/err" || fail "bad npy: message was: $(cat "$T/err")"
sed 's/"logical"/"physical"/' "$T/own/meta.json" > "$T/m" && cp -r "$T/own" "$T/bad2" && cp "$T/m" "$T/bad2/meta.json"
if "$M" import "$T/bad2" --db "$T/b.db" --tag bad --quiet 2> "$T/err"; then fail "physical ids accepted"; fi
grep -q "field 'id_space'" "$T/err" || fail "id_space: message was: $(cat "$T/err")"
if "$M" import "$T/bad" --db "$T/new.db" --tag bad --quiet 2>/dev/null; then fail "bad trace accepted"; fi
[ ! -e "$T/new.db" ] || fail "a refused import created the database"
[ "$(sha256sum "$T/b.db" | cut -d' ' -f1)" = "$sum_before" ] || fail "a refused import changed the database"
echo "malformed traces: refused, database unchanged"

# ---- 3. converters fed the engines' own outputs, imported, read back ---------------
# tests/convert_cases.py builds every input as vLLM, SGLang and transformers
# write it (torch.save dumps included) and compares the imported routes with
# what the engine routed.  It needs a python3 with numpy and torch.
"$PY" tests/convert_cases.py "$M" "$T/cc" || fail "converter cases (above)"

# the script itself, as a user runs it
"$PY" tools/moetrace_convert.py hf "$T/cc/olmoe1.npz" --config "$T/cc/olmoe/config.json" \
    -o "$T/cli_trace" > "$T/out" || fail "moetrace_convert.py hf: $(cat "$T/out")"
grep -q "wrote $T/cli_trace: 6 tokens from router probs (softmax), 3 MoE layers of 3" "$T/out" ||
    fail "moetrace_convert.py summary: $(cat "$T/out")"
if "$PY" tools/moetrace_convert.py hf "$T/cc/olmoe1.npz" --config "$T/cc/olmoe/config.json" \
    -o "$T/cli_trace" 2> "$T/err"; then fail "an existing output directory was overwritten"; fi
grep -q "exists already" "$T/err" || fail "existing output: $(cat "$T/err")"
"$M" import "$T/cli_trace" --db "$T/cli.db" --tag cli > "$T/out" 2>/dev/null || fail "import cli_trace"
grep -q "^imported 1 sequence as runs 1..1 (tag 'cli'): 6 tokens" "$T/out" || fail "import: $(cat "$T/out")"
echo "e2e_import: ok"
