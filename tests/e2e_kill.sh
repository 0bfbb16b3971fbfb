#!/usr/bin/env bash
# Crash safety of `moescope run` itself: kill it with SIGKILL at 50 moments
# while it logs long generations, then check that the database is intact,
# that every run reported complete holds all its tokens and routes, and that
# no interrupted run is shown as complete (it is marked on the next open).
set -u
bin=${MOESCOPE:-./moescope}
command -v sqlite3 > /dev/null || { echo "e2e_kill: sqlite3 missing, skipped"; echo "e2e_kill: 0 passed, 0 failed"; exit 0; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
db=$tmp/k.db
head -n 6 samples/prompts/python.txt > "$tmp/p.txt"
fail=0
pass=0
RANDOM=4242
for i in $(seq 1 50); do
    "$bin" run -f "$tmp/p.txt" -n 200 --temp 0.8 --seed "$i" --db "$db" --tag kill -q > /dev/null 2>&1 &
    pid=$!
    # between 20 ms and ~0.8 s: before the first commit, mid-run, between runs
    sleep "0.$(printf '%02d' $((RANDOM % 80 + 2)))"
    kill -9 "$pid" 2> /dev/null
    wait "$pid" 2> /dev/null
done
# one clean run afterwards: its open marks the dead writers' runs
"$bin" run -p "x" -n 2 --db "$db" --tag after > /dev/null || { echo "FAIL: run after kills"; fail=$((fail + 1)); }
ic=$(sqlite3 "$db" "pragma integrity_check")
[ "$ic" = ok ] && pass=$((pass + 1)) || { echo "FAIL: integrity_check: $ic"; fail=$((fail + 1)); }
running=$(sqlite3 "$db" "select count(*) from runs where status='running'")
[ "$running" = 0 ] && pass=$((pass + 1)) || { echo "FAIL: $running runs still 'running'"; fail=$((fail + 1)); }
# every complete run: tokens = n_prompt + n_gen, routes = tokens x 6 layers
badc=$(sqlite3 "$db" "select count(*) from runs r where r.status='complete' and (
    (select count(*) from tokens t where t.run=r.id) != r.n_prompt + r.n_gen or
    (select count(*) from routes x where x.run=r.id) != 6 * (r.n_prompt + r.n_gen))")
[ "$badc" = 0 ] && pass=$((pass + 1)) || { echo "FAIL: $badc complete runs are not intact"; fail=$((fail + 1)); }
ncomp=$(sqlite3 "$db" "select count(*) from runs where status='complete' and tag='kill'")
nint=$(sqlite3 "$db" "select count(*) from runs where status='interrupted'")
echo "  after 50 kills: $ncomp complete runs intact, $nint interrupted"
[ "$nint" -gt 0 ] && pass=$((pass + 1)) || { echo "FAIL: no run was interrupted: the kills missed"; fail=$((fail + 1)); }
echo "e2e_kill: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
