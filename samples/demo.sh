#!/usr/bin/env bash
# make demo: record the sample model on a few prompts of each domain, then
# show what the experts do: the arithmetic answer before and after switching
# off the experts that the contrast finds for arithmetic.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${MOESCOPE:-./moescope}
db=${DEMO_DB:-build/demo.db}
mkdir -p "$(dirname "$db")"
rm -f "$db" "$db-wal" "$db-shm"

echo "== Recording 8 prompts of each domain into $db"
for set in english german c python math; do
    head -n 8 "samples/prompts/$set.txt" > "build/demo-$set.txt"
    "$bin" run -f "build/demo-$set.txt" --db "$db" --tag "$set" -n 24 --greedy -q > /dev/null
done

echo
echo "== A few continuations (temperature 0.7, seed 1)"
printf 'And the LORD spake unto Moses, saying,\nDie Option --help zeigt\n#include <stdlib.h>\\nstatic int\nimport os\\ndef main(\n' > build/demo-mixed.txt
"$bin" run -f build/demo-mixed.txt --db "$db" --tag demo -n 32 --temp 0.7 --seed 1

echo
echo "== Arithmetic, greedy:"
"$bin" run -p "347 + 128 =" -n 8 --greedy --db "$db" --tag steer
if "$bin" contrast --help > /dev/null 2>&1; then
    others="english"
    ivs=$("$bin" contrast --db "$db" --a math --b english --top 4 --emit-interventions 2>/dev/null | tail -n 1)
    if [ -n "$ivs" ]; then
        echo
        echo "== The same prompt with the most arithmetic-specific experts off ($ivs):"
        # shellcheck disable=SC2086
        "$bin" run -p "347 + 128 =" -n 8 --greedy --db "$db" --tag steer $ivs
    fi
fi
if "$bin" tui --help > /dev/null 2>&1 && [ -t 1 ]; then
    echo
    echo "== Opening the app on $db (q quits)"
    exec "$bin" tui --db "$db"
fi
