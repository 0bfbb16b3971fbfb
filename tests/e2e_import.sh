#!/usr/bin/env bash
# tests/e2e_import.sh — moetrace end to end: tools/moetrace_convert.py fed
# arrays shaped exactly like vLLM's, SGLang's and transformers' outputs;
# `moescope import` of the results (a DeepSeek-V3-shaped trace among them);
# malformed traces refused with the database unchanged; and moescope runs
# → export --format moetrace → import giving the same routes and load.
set -euo pipefail
cd "$(dirname "$0")/.."
M=${MOESCOPE:-./moescope}
case "$M" in */*) ;; *) M=./$M ;; esac
T=$(mktemp -d /tmp/moescope-e2e-import-XXXXXX)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# a Python 3 with numpy (Debian: python3-numpy)
PY=""
for p in python3 /usr/bin/python3; do
    if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import numpy' 2>/dev/null; then PY=$p; break; fi
done

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

if [ -z "$PY" ]; then
    echo "SKIP: no python3 with numpy (apt-get install python3-numpy): converter tests skipped"
    exit 0
fi

# ---- 3. converters, fed the engines' own shapes ---------------------------------
"$PY" - "$T" <<'EOF'
import base64, io, json, os, subprocess, sys
import numpy as np
sys.path.insert(0, "tools")
import moetrace_convert as mc

T = sys.argv[1]
rng = np.random.default_rng(7)

def write(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f)

# DeepSeek-V3: 61 layers, 3 dense, 256 experts, top-8
ds = {"model_type": "deepseek_v3", "num_hidden_layers": 61, "first_k_dense_replace": 3,
      "moe_layer_freq": 1, "n_routed_experts": 256, "num_experts_per_tok": 8,
      "scoring_func": "sigmoid", "norm_topk_prob": True, "routed_scaling_factor": 2.5,
      "n_group": 8, "topk_group": 4, "_name_or_path": "deepseek-ai/DeepSeek-V3"}
write(os.path.join(T, "ds.json"), ds)
L, E, K, moe = mc.model_shape(ds)
assert (L, E, K) == (61, 256, 8) and moe == list(range(3, 61)), moe

# Qwen3-MoE-like: mlp_only_layers + decoder_sparse_step
qw = {"model_type": "qwen3_moe", "num_hidden_layers": 8, "num_experts": 16,
      "num_experts_per_tok": 2, "mlp_only_layers": [0, 5], "decoder_sparse_step": 1,
      "norm_topk_prob": True}
assert mc.model_shape(qw)[3] == [1, 2, 3, 4, 6, 7]
assert mc.model_shape(dict(qw, mlp_only_layers=[], decoder_sparse_step=2))[3] == [1, 3, 5, 7]

def vllm_routes(n_tok):
    """[n_tok - 1, 61, 8]: distinct experts per MoE row, zero rows for dense layers."""
    a = np.zeros((n_tok - 1, L, K), np.int64)
    for l in moe:
        a[:, l, :] = np.argsort(rng.random((n_tok - 1, E)), axis=1)[:, :K]
    return a

# vLLM: offline numpy, HTTP base64 .npy in three dtypes, the older int16 lists
reqs, expect = [], []
for i, dt in enumerate(["offline", np.uint8, np.uint16, np.int32, "old"]):
    n_prompt, n_out = 20 + i, 7
    prompt = rng.integers(0, 1000, n_prompt).tolist()
    out = rng.integers(0, 1000, n_out).tolist()
    a = vllm_routes(n_prompt + n_out)
    expect.append(a[:, moe, :])
    r = {"prompt_token_ids": prompt, "output_token_ids": out, "prompt": "request %d" % i}
    if dt == "offline":
        tokens, plen, ex = mc.vllm_request(dict(r, routed_experts=a), {"num_layers": L,
                                           "moe_layers": moe, "num_experts": E}, "offline")
        assert plen == n_prompt and (ex == a[:, moe, :]).all()
        r["routed_experts"] = a.tolist()
    elif dt == "old":
        r["prompt_routed_experts"] = a[:n_prompt].astype(np.int16).tolist()
        r["routed_experts"] = a[n_prompt:].astype(np.int16).tolist()
    else:
        buf = io.BytesIO()
        np.save(buf, a.astype(dt))
        r["routed_experts"] = base64.b64encode(buf.getvalue()).decode()
    reqs.append(r)
with open(os.path.join(T, "vllm.jsonl"), "w") as f:
    for r in reqs:
        f.write(json.dumps(r) + "\n")
out = os.path.join(T, "vllm_trace")
assert mc.main(["vllm", os.path.join(T, "vllm.jsonl"), "--config", os.path.join(T, "ds.json"),
                "-o", out]) == 0
meta = json.load(open(os.path.join(out, "meta.json")))
assert meta["moe_layers"] == moe and meta["num_experts"] == 256 and meta["top_k"] == 8
idx = np.load(os.path.join(out, "index.npy"))
ex = np.load(os.path.join(out, "experts.npy"))
assert ex.dtype == np.int16 and ex.shape[1:] == (58, 8)
row = 0
for i, r in enumerate(reqs):
    n = len(r["prompt_token_ids"]) + len(r["output_token_ids"])
    assert (idx[row:row + n, 0] == i).all() and (idx[row:row + n, 1] == np.arange(n)).all()
    assert (ex[row:row + n - 1] == expect[i]).all(), "vllm request %d" % i
    assert (ex[row + n - 1] == -1).all()          # the last token was never run
    row += n
assert not os.path.exists(os.path.join(out, "weights.npy"))

# a vLLM trace whose dense layer holds expert ids: the config is wrong
bad = dict(reqs[0]); a = vllm_routes(27); a[:, 1, 0] = 5; bad["routed_experts"] = a.tolist()
try:
    mc.vllm_request(bad, meta, "bad")
    raise SystemExit("dense layer with ids accepted")
except mc.ConvertError as e:
    assert "layer 1 is dense" in str(e), e

# SGLang: base64 raw int32 (-1, 61, 8), physical ids with an EPLB map
n_phys = 288
p2l = np.tile(np.concatenate([np.arange(E), np.arange(32)]), (L, 1))   # 32 redundant
l2p = np.arange(E)
sreqs, sexp = [], []
for i in range(3):
    n_prompt, n_out = 15, 5 + i
    a = vllm_routes(n_prompt + n_out)
    logical = a.copy()
    phys = a.copy()
    for l in moe:   # use the redundant copies for ids < 32 in half the rows
        m = (phys[:, l, :] < 32) & (np.arange(len(a))[:, None] % 2 == 0)
        phys[:, l, :][m] += 256
    sexp.append(logical[:, moe, :])
    sreqs.append({"input_ids": list(range(n_prompt)), "output_ids": list(range(n_out)),
                  "meta_info": {"routed_experts": base64.b64encode(
                      phys.astype("<i4").tobytes()).decode()}})
with open(os.path.join(T, "sglang.jsonl"), "w") as f:
    for r in sreqs:
        f.write(json.dumps(r) + "\n")
np.save(os.path.join(T, "p2l.npy"), p2l)
out = os.path.join(T, "sglang_trace")
assert mc.main(["sglang", os.path.join(T, "sglang.jsonl"), "--config",
                os.path.join(T, "ds.json"), "--physical-to-logical",
                os.path.join(T, "p2l.npy"), "-o", out]) == 0
ex = np.load(os.path.join(out, "experts.npy"))
row = 0
for i, r in enumerate(sreqs):
    n = len(r["input_ids"]) + len(r["output_ids"])
    assert (ex[row:row + n - 1] == sexp[i]).all(), "sglang request %d" % i
    row += n

# SGLang expert distribution recorder, per_token: two prefills then decodes
small = {"model_type": "qwen3_moe", "num_hidden_layers": 4, "num_experts": 8,
         "num_experts_per_tok": 2, "mlp_only_layers": [0]}
smeta = mc.base_meta(small, "sglang", "small")
recs, want = [], {0: [], 1: []}
def topk(n):
    t = np.full((4, n, 8), -1, np.int64)       # 8 slots, -1 = unused
    for l in (1, 2, 3):
        t[l, :, :2] = np.argsort(rng.random((n, 8)), axis=1)[:, :2]
    return t
t = topk(9)   # prefill: seq A 5 tokens, seq B 4 tokens
recs.append({"topk_ids_of_layer": t, "input_ids": np.arange(9), "positions":
             np.array([0, 1, 2, 3, 4, 0, 1, 2, 3]), "extend_seq_lens": np.array([5, 4])})
want[0].append(t[:, :5]); want[1].append(t[:, 5:])
for step in range(3):  # decode: one token each
    t = topk(2)
    recs.append({"topk_ids_of_layer": t, "input_ids": np.array([100 + step, 200 + step]),
                 "positions": np.array([5 + step, 4 + step]), "extend_seq_lens": np.array([1, 1])})
    want[0].append(t[:, :1]); want[1].append(t[:, 1:])
dump = {"records": recs, "last_physical_to_logical_map": np.tile(np.arange(8), (4, 1))}
out = os.path.join(T, "dump_trace")
n = mc.sglang_dump(dump, smeta, out)
assert n == 15
ex = np.load(os.path.join(out, "experts.npy")); idx = np.load(os.path.join(out, "index.npy"))
assert (idx[:8, 0] == 0).all() and (idx[8:, 0] == 1).all() and list(idx[:8, 1]) == list(range(8))
for s, r0 in ((0, 0), (1, 8)):
    w = np.concatenate(want[s], axis=1).transpose(1, 0, 2)[:, [1, 2, 3], :]
    assert (ex[r0:r0 + w.shape[0]] == w).all(), "dump sequence %d" % s
try:
    import torch
    import tempfile
    p = os.path.join(T, "dump.pt")
    torch.save({"records": [{k: torch.as_tensor(v) for k, v in r.items()} for r in recs],
                "last_physical_to_logical_map": torch.as_tensor(dump["last_physical_to_logical_map"])}, p)
    write(os.path.join(T, "small.json"), small)
    assert mc.main(["sglang-dump", p, "--config", os.path.join(T, "small.json"), "-o",
                    os.path.join(T, "dump_trace_pt")]) == 0
    assert (np.load(os.path.join(T, "dump_trace_pt", "experts.npy")) == ex).all()
    print("sglang dump through torch.save: ok")
except ImportError:
    print("SKIP: torch not installed: the torch.load step of sglang-dump is not tested")

# HF router logits: softmax + norm (Qwen3), softmax over top-k (Mixtral), sigmoid (DeepSeek-V3)
logits = rng.normal(size=(5, 16)).astype(np.float32)
idx, w = mc.hf_route(logits, qw)
p = np.exp(logits - logits.max(1, keepdims=True)); p /= p.sum(1, keepdims=True)
ref = np.argsort(-p, 1)[:, :2]
assert (idx == ref).all()
rw = np.take_along_axis(p, ref, 1); rw /= rw.sum(1, keepdims=True)
print("hf softmax weights: largest difference %g" % np.abs(w - rw).max())
assert np.abs(w - rw).max() < 1e-6
mx = dict(qw, model_type="mixtral", num_local_experts=16)
idx, w = mc.hf_route(logits, mx)
top = np.take_along_axis(logits, ref, 1); e = np.exp(top - top.max(1, keepdims=True))
assert (idx == ref).all() and np.abs(w - e / e.sum(1, keepdims=True)).max() < 1e-6
dl = rng.normal(size=(6, 256)).astype(np.float32)
bias = rng.normal(scale=0.1, size=256)
idx, w = mc.hf_route(dl, ds, bias)
s = 1 / (1 + np.exp(-dl.astype(np.float64))); sel = s + bias
for t in range(6):   # brute force: groups of 32 ranked by their top-2 sum
    g = sel[t].reshape(8, 32); gs = np.sort(g, 1)[:, -2:].sum(1)
    keep = np.argsort(-gs)[:4]
    cand = [e for e in range(256) if e // 32 in keep]
    best = sorted(cand, key=lambda e: -sel[t, e])[:8]
    assert list(idx[t]) == best, (t, list(idx[t]), best)
    ww = s[t, best] / s[t, best].sum() * 2.5
    assert np.abs(w[t] - ww).max() < 1e-5
assert abs(w.sum(1) - 2.5).max() < 1e-5
# an .npz as transformers returns it: one (tokens, experts) tensor per MoE layer
write(os.path.join(T, "qw.json"), qw)
ids = rng.integers(0, 500, (2, 9))
np.savez(os.path.join(T, "hf.npz"), input_ids=ids, prompt_lens=np.array([4, 6]),
         **{"router_logits_%d" % j: rng.normal(size=(18, 16)).astype(np.float32)
            for j in range(6)})
assert mc.main(["hf", os.path.join(T, "hf.npz"), "--config", os.path.join(T, "qw.json"),
                "-o", os.path.join(T, "hf_trace")]) == 0
hw = np.load(os.path.join(T, "hf_trace", "weights.npy"))
assert hw.shape == (18, 6, 2) and abs(hw.sum(2) - 1).max() < 1e-6
assert np.load(os.path.join(T, "hf_trace", "logits.npy")).shape == (18, 6, 16)

# the DeepSeek-V3-sized synthetic vLLM trace for moescope import: 4 x 500 tokens
big = []
for i in range(4):
    a = vllm_routes(500)
    buf = io.BytesIO(); np.save(buf, a.astype(np.uint8))
    big.append({"prompt_token_ids": list(range(100)), "output_token_ids": list(range(400)),
                "routed_experts": base64.b64encode(buf.getvalue()).decode()})
with open(os.path.join(T, "ds.jsonl"), "w") as f:
    for r in big:
        f.write(json.dumps(r) + "\n")
assert mc.main(["vllm", os.path.join(T, "ds.jsonl"), "--config", os.path.join(T, "ds.json"),
                "-o", os.path.join(T, "ds_trace")]) == 0
print("converters: ok")
EOF

for tr in vllm_trace sglang_trace dump_trace hf_trace ds_trace; do
    "$M" import "$T/$tr" --db "$T/c.db" --tag "$tr" --quiet > "$T/out" || fail "import $tr"
    grep -q "^imported" "$T/out" || fail "import $tr: $(cat "$T/out")"
done
# the first vLLM request, token 0, layer 3 (first MoE layer): its 8 experts in order
want=$("$PY" -c "import numpy as np; print(','.join(str(x) for x in np.load('$T/vllm_trace/experts.npy')[0,0]))")
"$M" export --db "$T/c.db" --tag vllm_trace --format jsonl --what routes > "$T/vr"
got=$(head -1 "$T/vr")
case "$got" in *'"pos":0,"layer":3,"experts":['"$want"']'*) ;; *) fail "vllm import: got $got, want experts $want" ;; esac
n=$("$M" export --db "$T/c.db" --tag ds_trace --format jsonl --what routes | wc -l)
[ "$n" -eq $((4 * 499 * 58)) ] || fail "DeepSeek-V3 trace: $n routes, expected $((4 * 499 * 58))"
if "$M" stats --help >/dev/null 2>&1; then
    "$M" stats --db "$T/c.db" --tag ds_trace > "$T/stats" || fail "stats on the imported trace"
    echo "stats on the DeepSeek-V3-shaped trace: $(wc -l < "$T/stats") lines"
fi
echo "e2e_import: ok"
