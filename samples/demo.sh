#!/usr/bin/env bash
# make demo: record the sample model on prompts of each domain, find the
# experts most specific to arithmetic, switch them off and show the answer
# and the accuracy change, then open the app on the recorded runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${MOESCOPE:-./moescope}
db=${DEMO_DB:-build/demo.db}
mkdir -p "$(dirname "$db")"
rm -f "$db" "$db-wal" "$db-shm"

echo "== Recording 30 prompts of each domain into $db"
for set in english german c python math; do
    head -n 30 "samples/prompts/$set.txt" > "build/demo-$set.txt"
    "$bin" run -f "build/demo-$set.txt" --db "$db" --tag "$set" -n 24 --greedy -q > /dev/null
done

echo
echo "== A few continuations (temperature 0.7, seed 1)"
printf 'And the LORD spake unto Moses, saying,\nDie Option --help zeigt\n#include <stdlib.h>\\nstatic int\nimport os\\ndef main(\n' > build/demo-mixed.txt
"$bin" run -f build/demo-mixed.txt --db "$db" --tag demo -n 32 --temp 0.7 --seed 1

echo
echo "== Arithmetic, greedy:"
"$bin" run -p "347 + 128 =" -n 8 --greedy --db "$db" --tag steer
ivs=$("$bin" contrast --db "$db" --a math --b english,german,c,python --top 4 --perm 0 --emit-interventions)
echo
echo "== The experts most specific to arithmetic (contrast against the other four domains):"
"$bin" contrast --db "$db" --a math --b english,german,c,python --top 6 --perm 200
echo
echo "== The same prompt with those experts switched off ($ivs):"
# shellcheck disable=SC2086
"$bin" run -p "347 + 128 =" -n 8 --greedy --db "$db" --tag steer $ivs
echo
echo "== Arithmetic accuracy on 60 problems, before and after:"
head -n 60 samples/prompts/math.tsv > build/demo-math.tsv
"$bin" eval --tsv build/demo-math.tsv | head -n 1
# shellcheck disable=SC2086
"$bin" eval --tsv build/demo-math.tsv $ivs | head -n 1
if "$bin" tui --help > /dev/null 2>&1 && [ -t 1 ]; then
    echo
    echo "== Opening the app on $db (q quits)"
    exec "$bin" tui --db "$db"
fi
