#!/bin/bash
# tests/e2e_tui.sh — drives `moescope tui` in a detached tmux session on the
# shipped sample: records two runs, opens one, moves on the heatmap to the
# expert layer 2 chose first for the first generated token, disables it,
# re-runs, and checks from the captured screen that the steered text parts
# from the baseline and the intervention is listed; then a resize test and
# a test that SIGTERM leaves the terminal settings as they were.
set -u
if ! command -v tmux >/dev/null 2>&1; then
    echo "e2e_tui: tmux is not installed; skipping the full-screen tests"
    exit 0
fi
M=$(realpath "${MOESCOPE:-./moescope}")
MODEL=samples/sample-q8_0.gguf
tmp=$(mktemp -d)
T="tmux -L moescope-e2e-$$ -f /dev/null"
cleanup() {
    $T kill-server >/dev/null 2>&1
    rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
    echo "e2e_tui: FAIL: $*"
    echo "---- screen ----"
    $T capture-pane -p -t e2e 2>/dev/null
    exit 1
}
screen() { $T capture-pane -p -t e2e; }
# wait_for PATTERN [SECONDS]: until the screen matches (grep -E)
wait_for() {
    local i n=$(( ${2:-10} * 10 ))
    for ((i = 0; i < n; i++)); do
        screen | grep -qE -- "$1" && return 0
        sleep 0.1
    done
    fail "timed out waiting for /$1/"
}
keys() { $T send-keys -t e2e "$@"; sleep 0.15; }

db=$tmp/e2e.db
P="347 + 128 = "
base=$("$M" run -m $MODEL -p "$P" -n 24 --greedy --tag math --db "$db" -q) || fail "moescope run (math)"
"$M" run -m $MODEL -p "In the beginning God created" -n 24 --greedy --tag english --db "$db" -q >/dev/null \
    || fail "moescope run (english)"

# ---- open a run, move, disable, re-run ---------------------------------
$T new-session -d -s e2e -x 120 -y 40 \
    "env LANG=C.UTF-8 $M tui --db $db -m $MODEL; echo \$? > $tmp/exit; sleep 30"
wait_for "Runs: 2 of 2"
screen | grep -q "347 + 128" || fail "run list lacks the math prompt"
keys Enter
wait_for "Heatmap: share of tokens routed"
wait_for "Route of token"
# the route pane lists, for the selected (first generated) token, each
# layer's experts.  Take the first layer whose first choice, switched off,
# changes the greedy text (checked with moescope run), and steer that in the
# app.
routes=$(screen | grep -oE "L[0-9]+ +e[0-9]+ " | tr -s ' ')
[ -n "$routes" ] || fail "no route on screen"
L= e=
for l in 2 3 4 1 5 0; do
    x=$(echo "$routes" | grep -E "^L$l e" | head -1 | grep -oE "e[0-9]+" | tr -d e)
    [ -n "$x" ] || continue
    alt=$("$M" run -m $MODEL -p "$P" -n 24 --greedy --no-db -q --disable "$l:$x") || fail "moescope run --disable $l:$x"
    if [ "$alt" != "$base" ]; then L=$l; e=$x; break; fi
done
[ -n "$L" ] || fail "no single first-choice expert changes the text (routes: $routes)"
for ((i = 0; i < e; i++)); do keys Right; done
for ((i = 0; i < L; i++)); do keys Down; done
wait_for "L$L:E$e routed"
keys d
wait_for "disable $L:$e \(all\)"
keys r
wait_for "first divergence|same as the baseline" 60
screen | grep -q "first divergence" || fail "the steered text did not change (disable $L:$e)"
screen | grep -qE "steered \(run 3: disable $L:$e \(all\)\)" || fail "steered pane title lacks the intervention"
screen | grep -qE "^. disable $L:$e \(all\)" || fail "the intervention is not listed"
# the two texts differ on screen
left=$(screen | sed -n '/baseline (run 1)/,/└/p' | cut -c2-58 | tr -d ' │')
right=$(screen | sed -n '/baseline (run 1)/,/└/p' | cut -c62-118 | tr -d ' │')
[ -n "$left" ] && [ "$left" != "$right" ] || fail "baseline and steered panes show the same text"
if command -v sqlite3 >/dev/null 2>&1; then
    p=$(sqlite3 "$db" "SELECT parent FROM runs WHERE id = 3")
    [ "$p" = "1" ] || fail "the steered run is not logged as a child of run 1 (parent '$p')"
fi
echo "e2e_tui: disable $L:$e changed the text; steered run 3 is a child of run 1"

# ---- resize ------------------------------------------------------------
keys Escape
wait_for "Heatmap: share"
$T resize-window -t e2e -x 60 -y 20
wait_for "Heatmap"
w=$(screen | LC_ALL=C.UTF-8 wc -L)
[ "$w" -le 60 ] || fail "after resizing to 60 columns a line is $w wide"
$T resize-window -t e2e -x 30 -y 8
wait_for "needs 40x12"
$T resize-window -t e2e -x 1 -y 1
sleep 0.3
$T resize-window -t e2e -x 120 -y 40
wait_for "Heatmap: share"
wait_for "F1.?Help"
keys q
for i in $(seq 50); do [ -s "$tmp/exit" ] && break; sleep 0.1; done
[ "$(cat $tmp/exit 2>/dev/null)" = "0" ] || fail "q did not exit with status 0 (after resizes down to 1x1)"
echo "e2e_tui: resize to 60x20, 30x8, 1x1 and back: redrawn, exit 0"
$T kill-session -t e2e

# ---- SIGTERM restores the terminal --------------------------------------
$T new-session -d -s e2e -x 100 -y 30 \
    "stty -g > $tmp/before; env LANG=C.UTF-8 $M tui --db $db -m $MODEL; echo \$? > $tmp/code; stty -g > $tmp/after; sleep 30"
wait_for "Runs:"
tty=$($T display -p -t e2e '#{pane_tty}')
during=$(stty -g < "$tty")
shell=$($T display -p -t e2e '#{pane_pid}')
pid=$(pgrep -P "$shell" | head -1)
[ -n "$pid" ] || fail "cannot find the app's process"
kill -TERM "$pid"
for i in $(seq 50); do [ -s "$tmp/after" ] && break; sleep 0.1; done
[ -s $tmp/after ] || fail "the app did not end on SIGTERM"
[ "$during" != "$(cat $tmp/before)" ] || fail "the app did not change the terminal settings (test is void)"
[ "$(cat $tmp/before)" = "$(cat $tmp/after)" ] || fail "stty after SIGTERM differs: $(cat $tmp/after) vs $(cat $tmp/before)"
[ "$(cat $tmp/code)" = "143" ] || fail "exit status after SIGTERM $(cat $tmp/code), expected 143"
echo "e2e_tui: SIGTERM: status 143, terminal settings restored"
echo "e2e_tui: ok"
