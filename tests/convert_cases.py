"""tests/convert_cases.py - tools/moetrace_convert.py fed inputs built
exactly as the engines write them, then `moescope import`, then the routes
read back with `moescope export` and compared with what the engine routed.

Run by tests/e2e_import.sh:  PYTHON tests/convert_cases.py MOESCOPE TMPDIR
(PYTHON: a python3 with numpy and torch, found explicitly by the script).

The inputs follow the upstream code:
  SGLang   eplb/expert_distribution.py: _DetailSinglePassGatherer.collect()
           (input_ids / positions as lists, extend_seq_lens_cpu - None on
           decode passes -, forward_mode, topk_ids_of_layer int32 [layers,
           tokens, 8] reset to -1), _DetailAccumulator.append() (adds
           forward_pass_id, rank, gatherer_key), dump() (records +
           last_physical_to_logical_map, torch.save, one file per rank);
           _SelectExpertsSinglePassGatherer / DeepEP low-latency
           (global_physical_count [layers, physical]); _StatAccumulator
           (rank, logical_count [steps, layers, experts] summed over ranks);
           /generate meta_info.routed_experts = base64 of the flat array in
           routed_experts_dtype (SGLANG_ROUTED_EXPERTS_DTYPE), covering
           [routed_experts_start_len, seqlen - 1).
  vLLM     routed_experts_capturer: int16 host buffer [positions, layers,
           top_k] (zeros, or -1 in newer releases, where nothing ran);
           layers = num_hidden_layers or the MoE layers; split into
           RequestOutput.prompt_routed_experts and CompletionOutput.
           routed_experts; HTTP: lists, "prompt_routed_experts": null.
  HF       the routers of transformers (Mixtral, Qwen3-MoE, OLMoE, gpt-oss,
           DeepSeek-V3, Llama-4), in float64 torch as the reference, and the
           router_logits they return (probabilities in v5 before PR #45131).
Each case prints one line; any failure raises and the script exits 1.
"""

import base64
import contextlib
import io
import json
import os
import subprocess
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import moetrace_convert as mc  # noqa: E402

M, T = sys.argv[1], sys.argv[2]
RNG = np.random.default_rng(20240614)


class Fail(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Fail(msg)


def path(*p):
    return os.path.join(T, *p)


def write_json(p, obj):
    with open(p, "w") as f:
        json.dump(obj, f)
    return p


def convert(args):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = mc.main(args)
    return rc, err.getvalue()


def convert_ok(args):
    rc, err = convert(args)
    check(rc == 0, "convert %s: %s" % (args, err))


def refused(args, *needles):
    rc, err = convert(args)
    check(rc == 1, "convert %s: expected a refusal, got rc %d" % (args, rc))
    for n in needles:
        check(n in err, "convert %s: message lacks %r: %s" % (args, n, err))
    return err


def moescope(*args):
    r = subprocess.run([M] + list(args), capture_output=True, text=True)
    if r.returncode != 0:
        raise Fail("moescope %s: %s" % (" ".join(args), r.stderr))
    return r.stdout


def imported(trace, tag):
    db = path(tag + ".db")
    moescope("import", trace, "--db", db, "--tag", tag, "--quiet")
    runs = [json.loads(l) for l in
            moescope("export", "--db", db, "--tag", tag, "--format", "jsonl", "--what",
                     "runs").splitlines()]
    routes = [json.loads(l) for l in
              moescope("export", "--db", db, "--tag", tag, "--format", "jsonl", "--what",
                       "routes").splitlines()]
    return db, runs, routes


def compare(trace, tag, seqs, weights=True):
    """seqs: per sequence (prompt_len, n_tokens, {(pos, layer): (experts,
    weights|None)}).  The import must hold exactly these routes."""
    db, runs, routes = imported(trace, tag)
    check(len(runs) == len(seqs), "%s: %d runs, expected %d" % (tag, len(runs), len(seqs)))
    ids = [r["run"] for r in runs]
    got = {}
    for r in routes:
        got[(ids.index(r["run"]), r["pos"], r["layer"])] = (r["experts"], r["weights"])
    want = {}
    for i, (plen, n, rt) in enumerate(seqs):
        check(runs[i]["n_prompt"] == plen and runs[i]["n_prompt"] + runs[i]["n_gen"] == n,
              "%s: run %d has %d prompt + %d generated tokens, expected %d of %d"
              % (tag, i, runs[i]["n_prompt"], runs[i]["n_gen"], plen, n))
        for (p, l), v in rt.items():
            want[(i, p, l)] = v
    check(set(got) == set(want), "%s: routes at %s, expected %s" % (
        tag, sorted(set(got) ^ set(want))[:5], "these to differ"))
    maxd = 0.0
    for key, (ex, w) in want.items():
        gex, gw = got[key]
        check(list(gex) == list(ex), "%s: seq %d pos %d layer %d: experts %s, expected %s"
              % ((tag,) + key + (gex, list(ex))))
        if weights and w is not None:
            # the trace stores float32: compare with the reference rounded so
            maxd = max(maxd, float(np.abs(np.asarray(gw, np.float64) -
                                          np.asarray(w, np.float32).astype(np.float64)).max()))
    return maxd, db


def routes_from(rows, moe, p0=0):
    """{(pos, layer): (experts without -1, None)} of rows [T, n_moe, K]."""
    out = {}
    for t in range(rows.shape[0]):
        for j, l in enumerate(moe):
            ex = [int(e) for e in rows[t, j] if e >= 0]
            if ex:
                out[(p0 + t, l)] = (ex, None)
    return out


def distinct_topk(n, n_exp, k):
    return np.argsort(RNG.random((n, n_exp)), axis=1)[:, :k]


CASES = []


def case(f):
    CASES.append(f)
    return f


# ---- configs as config.json writes them ---------------------------------------

DSV3 = {"architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3",
        "num_hidden_layers": 6, "first_k_dense_replace": 2, "moe_layer_freq": 1,
        "n_routed_experts": 32, "num_experts_per_tok": 4, "n_group": 4, "topk_group": 2,
        "topk_method": "noaux_tc", "scoring_func": "sigmoid", "norm_topk_prob": True,
        "routed_scaling_factor": 2.5, "n_shared_experts": 1,
        "_name_or_path": "deepseek-ai/DeepSeek-V3-tiny"}
MIXTRAL = {"model_type": "mixtral", "num_hidden_layers": 3, "num_local_experts": 8,
           "num_experts_per_tok": 2, "router_aux_loss_coef": 0.02}
QWEN3 = {"model_type": "qwen3_moe", "num_hidden_layers": 4, "num_experts": 16,
         "num_experts_per_tok": 4, "norm_topk_prob": True, "decoder_sparse_step": 1,
         "mlp_only_layers": [0]}
OLMOE = {"model_type": "olmoe", "num_hidden_layers": 3, "num_experts": 16,
         "num_experts_per_tok": 4, "norm_topk_prob": False}
GPTOSS = {"model_type": "gpt_oss", "num_hidden_layers": 3, "num_local_experts": 8,
          "num_experts_per_tok": 2, "experts_per_token": 2}
LLAMA4 = {"architectures": ["Llama4ForConditionalGeneration"], "model_type": "llama4",
          "text_config": {"model_type": "llama4_text", "num_hidden_layers": 8,
                          "num_local_experts": 16, "num_experts_per_tok": 1,
                          "interleave_moe_layer_step": 2, "moe_layers": None},
          "vision_config": {"model_type": "llama4_vision_model"}}
SMALL = {"model_type": "deepseek_v3", "num_hidden_layers": 4, "first_k_dense_replace": 1,
         "moe_layer_freq": 1, "n_routed_experts": 16, "num_experts_per_tok": 2,
         "n_group": 1, "topk_group": 1, "topk_method": "noaux_tc", "norm_topk_prob": True,
         "routed_scaling_factor": 1.0, "scoring_func": "sigmoid"}

for name, c in (("dsv3", DSV3), ("mixtral", MIXTRAL), ("qwen3", QWEN3), ("olmoe", OLMOE),
                ("gptoss", GPTOSS), ("llama4", LLAMA4), ("small", SMALL)):
    os.makedirs(path(name), exist_ok=True)
    write_json(path(name, "config.json"), c)


def cfgp(name):
    return path(name, "config.json")


# ---- SGLang expert distribution recorder ---------------------------------------

class Recorder:
    """SGLang's per_token recorder of one rank, pass by pass."""

    def __init__(self, n_layers, moe, n_exp, k, n_phys, rank=0):
        self.L, self.moe, self.E, self.k, self.P, self.rank = n_layers, moe, n_exp, k, n_phys, rank
        self.records = []
        self.p2l = torch.arange(n_phys).repeat(n_layers, 1) % n_exp   # init_trivial

    def forward(self, input_ids, positions, extend_seq_lens, mode, logical=None):
        """One pass; logical [T, n_moe, k] (drawn when None).  Returns it."""
        t = len(input_ids)
        if logical is None:
            logical = np.stack([distinct_topk(t, self.E, self.k) for _ in self.moe], axis=1)
        topk = torch.full((self.L, t, 8), -1, dtype=torch.int32)     # reset(): -1
        for j, l in enumerate(self.moe):
            phys = torch.as_tensor(logical[:, j, :], dtype=torch.int32)
            # the redundant copies (physical E..P-1 = logical 0..P-E-1) take
            # the tokens of odd positions
            red = (phys < self.P - self.E) & (torch.as_tensor(positions)[:, None] % 2 == 1)
            phys = torch.where(red, phys + self.E, phys)
            topk[l, :t, :self.k] = phys                                # on_select_experts
        self.records.append(dict(forward_pass_id=len(self.records) + 7, rank=self.rank,
                                 gatherer_key="primary", input_ids=list(input_ids),
                                 positions=list(positions), extend_seq_lens=extend_seq_lens,
                                 forward_mode=mode, topk_ids_of_layer=topk.clone(),
                                 misc_objects=[]))
        return logical

    def dump(self, p):
        torch.save(dict(records=self.records, last_physical_to_logical_map=self.p2l), p)
        return p


SM_L, SM_MOE, SM_E, SM_K = 4, [1, 2, 3], 16, 2


@case
def sglang_dump_decode_passes_round_trip():
    """(1) decode passes carry extend_seq_lens None; (multi-rank) TP ranks
    dump identical records; physical ids of redundant experts mapped."""
    rec = [Recorder(SM_L, SM_MOE, SM_E, SM_K, 20, rank=r) for r in (0, 1)]
    want = {"A": [[], []], "B": [[], []], "C": [[], []]}

    def fwd(ids, pos, lens, mode, owners):
        lg = rec[0].forward(ids, pos, lens, mode)
        rec[1].forward(ids, pos, lens, mode, lg)
        for i, o in enumerate(owners):
            want[o][0].append(ids[i])
            want[o][1].append(lg[i])
    fwd(list(range(10, 15)) + list(range(20, 24)), [0, 1, 2, 3, 4, 0, 1, 2, 3], [5, 4], 1,
        "AAAAABBBB")
    for step in range(3):                                  # decode: A at 5.., B at 4..
        fwd([30 + step, 40 + step], [5 + step, 4 + step], None, 2, "AB")
    fwd([50], [7], None, 2, "B")                           # A has finished
    fwd([60, 61, 62], [0, 1, 2], [3], 1, "CCC")            # C arrives
    fwd([70, 71], [8, 3], None, 2, "BC")
    files = [r.dump(path("dump_%d.pt" % r.rank)) for r in rec]
    convert_ok(["sglang-dump"] + files + ["--config", cfgp("small"), "-o", path("sg_tok")])
    seqs = []
    for o, plen in (("A", 5), ("B", 4), ("C", 3)):
        rows = np.stack(want[o][1])
        seqs.append((plen, len(want[o][0]), routes_from(rows, SM_MOE)))
    compare(path("sg_tok"), "sgtok", seqs, weights=False)
    idx = np.load(path("sg_tok", "index.npy"))
    check(list(idx[:8, 2]) == list(range(10, 15)) + [30, 31, 32], "sequence A's tokens")
    print("sglang per_token dump (decode passes with extend_seq_lens None, 2 identical TP "
          "ranks, redundant experts): routes exact")


def small_dump(name, passes, rank=0):
    r = Recorder(SM_L, SM_MOE, SM_E, SM_K, SM_E, rank)
    out = []
    for ids, pos, lens, mode in passes:
        out.append(r.forward(ids, pos, lens, mode))
    return r.dump(path(name)), out


@case
def sglang_dump_prefix_cache_hit_refused():
    """(2) B extends from position 3 (its first 3 tokens from the radix
    cache) right after A's 3-token prefill: no longer appended to A."""
    p, _ = small_dump("prefix.pt", [([1, 2, 3], [0, 1, 2], [3], 1),
                                    ([4, 5, 6, 7], [3, 4, 5, 6], [4], 1)])
    refused(["sglang-dump", p, "--config", cfgp("small"), "-o", path("prefix_t")],
            "starts at position 3", "prefix cache", "--disable-radix-cache",
            "return_routed_experts")
    check(not os.path.exists(path("prefix_t")) and not os.path.exists(path("prefix_t.tmp")),
          "a refused conversion left output behind")
    # the same dump with a request that had no chunk before: a cache hit
    p2, _ = small_dump("prefix2.pt", [([4, 5, 6, 7], [3, 4, 5, 6], [4], 1)])
    refused(["sglang-dump", p2, "--config", cfgp("small"), "-o", path("prefix_t2"),
             "--no-prefix-cache"], "continues no sequence in prefill")
    # two requests decoding at the same positions cannot be told apart
    p3, _ = small_dump("twins.pt", [([1, 2], [0, 1], [2], 1), ([3, 4], [0, 1], [2], 1),
                                    ([5, 6], [2, 2], None, 2)])
    refused(["sglang-dump", p3, "--config", cfgp("small"), "-o", path("twins")],
            "2 sequences end at position 1", "return_routed_experts")
    print("sglang per_token dump: prefix-cache hit and same-length twins refused, naming the "
          "cause and return_routed_experts")


@case
def sglang_dump_chunked_prefill_prompt_len():
    """(3) an 8-token prompt prefilled in two chunks of 4 is 8 prompt
    tokens (its one generated token never ran); with decode passes after it
    as well; without --no-prefix-cache the continuation is refused."""
    passes = [(list(range(100, 104)), [0, 1, 2, 3], [4], 1),
              (list(range(104, 108)), [4, 5, 6, 7], [4], 1)]
    p, lg = small_dump("chunk.pt", passes)
    convert_ok(["sglang-dump", p, "--config", cfgp("small"), "-o", path("chunk_t"),
                "--no-prefix-cache"])
    compare(path("chunk_t"), "chunk", [(8, 8, routes_from(np.concatenate(lg), SM_MOE))],
            weights=False)
    p, lg = small_dump("chunk2.pt", passes + [([200], [8], None, 2), ([201], [9], None, 2)])
    refused(["sglang-dump", p, "--config", cfgp("small"), "-o", path("chunk_t0")],
            "chunked-prefill continuation", "--no-prefix-cache")
    convert_ok(["sglang-dump", p, "--config", cfgp("small"), "-o", path("chunk_t2"),
                "--no-prefix-cache"])
    compare(path("chunk_t2"), "chunk2", [(8, 10, routes_from(np.concatenate(lg), SM_MOE))],
            weights=False)
    print("sglang per_token dump: chunked prefill (2 x 4 tokens) imports as 8 prompt tokens "
          "(+ 2 generated with decode passes)")


@case
def sglang_dump_other_modes_refused():
    for mode, needle in ((3, "--enable-mixed-chunk"), (5, "speculative")):
        lens = [2] if mode == 3 else None
        p, _ = small_dump("mode%d.pt" % mode, [([1, 2], [0, 1], lens, mode)])
        refused(["sglang-dump", p, "--config", cfgp("small"), "-o", path("mode%d" % mode)],
                needle)
    r = Recorder(SM_L, SM_MOE, SM_E, SM_K, SM_E)
    r.forward([1, 2], [0, 1], [2], 1)
    r.p2l = torch.flip(r.p2l, dims=[1])                       # EPLB-rebalanced map
    p = r.dump(path("eplb.pt"))
    refused(["sglang-dump", p, "--config", cfgp("small"), "-o", path("eplb")],
            "--static-expert-location")
    convert_ok(["sglang-dump", p, "--config", cfgp("small"), "-o", path("eplb_ok"),
                "--static-expert-location"])
    # a request retracted under memory pressure and prefilled again with the
    # token it had generated (B keeps decoding, so A's absence closes it)
    p, _ = small_dump("retract.pt", [([1, 2], [0, 1], [2], 1), ([9, 8, 7], [0, 1, 2], [3], 1),
                                     ([3, 6], [2, 3], None, 2), ([5], [4], None, 2),
                                     ([1, 2, 3], [0, 1, 2], [3], 1)])
    refused(["sglang-dump", p, "--config", cfgp("small"), "-o", path("retract"),
             "--no-prefix-cache"], "retracted request")
    # DP attention without DeepEP: rank 1's recorder holds rank 0's rows
    a = Recorder(SM_L, SM_MOE, SM_E, SM_K, SM_E, 0)
    b = Recorder(SM_L, SM_MOE, SM_E, SM_K, SM_E, 1)
    lg = a.forward([1, 2, 3], [0, 1, 2], [3], 1)
    b.forward([7, 8, 9], [0, 1, 2], [3], 1, lg)
    refused(["sglang-dump", a.dump(path("dp0.pt")), b.dump(path("dp1.pt")), "--config",
             cfgp("small"), "-o", path("dp")], "DP attention")
    print("sglang per_token dump: MIXED / speculative passes, a changed EPLB map, a retracted "
          "request run again and DP-attention copies refused")


@case
def sglang_dump_dp_ranks_distinct_sequences():
    a = Recorder(SM_L, SM_MOE, SM_E, SM_K, SM_E, 0)
    b = Recorder(SM_L, SM_MOE, SM_E, SM_K, SM_E, 1)
    la = [a.forward([1, 2, 3], [0, 1, 2], [3], 1), a.forward([4], [3], None, 2)]
    lb = [b.forward([5, 6], [0, 1], [2], 1), b.forward([7], [2], None, 2)]
    fa, fb = a.dump(path("dpa.pt")), b.dump(path("dpb.pt"))
    convert_ok(["sglang-dump", fa, fb, "--config", cfgp("small"), "-o", path("dp_ok")])
    compare(path("dp_ok"), "dp", [(3, 4, routes_from(np.concatenate(la), SM_MOE)),
                                  (2, 3, routes_from(np.concatenate(lb), SM_MOE))],
            weights=False)
    print("sglang per_token dump: two DP-attention ranks merge into one import")


class PassCounter:
    """_SelectExpertsSinglePassGatherer (every rank counts its tokens'
    physical experts) or DeepEP low-latency (each rank its local slice)."""

    def __init__(self, rank, n_phys):
        self.rank, self.P, self.records = rank, n_phys, []

    def forward(self, phys_topk, n_layers, moe, local=None):
        g = torch.zeros((n_layers, self.P), dtype=torch.int32)
        for j, l in enumerate(moe):
            ids = torch.as_tensor(phys_topk[:, j, :]).flatten().long()
            mask = ids != -1
            g[l].scatter_add_(0, ids.masked_fill(~mask, 0), mask.int())
        if local is not None:                                  # a DeepEP rank's slice
            lo, hi = local
            keep = torch.zeros(self.P, dtype=torch.bool)
            keep[lo:hi] = True
            g = torch.where(keep[None, :], g, torch.zeros_like(g))
        self.records.append(dict(forward_pass_id=len(self.records), rank=self.rank,
                                 gatherer_key="primary", global_physical_count=g.clone()))

    def dump(self, p, p2l):
        torch.save(dict(records=self.records, last_physical_to_logical_map=p2l), p)
        return p


def count_layers(logical, moe, n_exp):
    c = np.zeros((len(moe), n_exp), np.int64)
    for j in range(len(moe)):
        np.add.at(c[j], logical[:, j, :].reshape(-1), 1)
    return c


def stats_counts(db, tag):
    s = json.loads(moescope("stats", "--db", db, "--tag", tag, "--format", "json"))
    return s


@case
def sglang_per_pass_and_stat_counts():
    E, P, n_layers, moe, k = SM_E, 20, SM_L, SM_MOE, SM_K
    p2l = torch.arange(P).repeat(n_layers, 1) % E
    passes = [distinct_topk(n, E, k) for n in (9, 2, 2, 1)]
    logical = [np.stack([distinct_topk(n, E, k) for _ in moe], axis=1) for n in (9, 2, 2, 1)]
    phys = [np.where((lg < P - E) & (np.arange(len(lg))[:, None, None] % 2 == 1), lg + E, lg)
            for lg in logical]
    del passes
    want = count_layers(np.concatenate(logical), moe, E)
    # tensor parallelism: both ranks count every token (identical records)
    tp = [PassCounter(r, P) for r in (0, 1)]
    for ph in phys:
        for c in tp:
            c.forward(ph, n_layers, moe)
    fs = [c.dump(path("pp_tp_%d.pt" % c.rank), p2l) for c in tp]
    convert_ok(["sglang-dump"] + fs + ["--config", cfgp("small"), "-o", path("pp_tp")])
    # DeepEP low-latency: each rank counts its 10 local physical experts
    ep = [PassCounter(r, P) for r in (0, 1)]
    for ph in phys:
        for c in ep:
            c.forward(ph, n_layers, moe, local=(10 * c.rank, 10 * c.rank + 10))
    fe = [c.dump(path("pp_ep_%d.pt" % c.rank), p2l) for c in ep]
    convert_ok(["sglang-dump"] + fe + ["--config", cfgp("small"), "-o", path("pp_ep")])
    n_tok = sum(len(x) for x in logical)
    for tr, tag in (("pp_tp", "pptp"), ("pp_ep", "ppep")):
        c = np.load(path(tr, "counts.npy"))
        check(c.shape == (1, len(moe), E) and (c[0] == want).all(), tr + ": counts")
        db, runs, routes = imported(path(tr), tag)
        check(len(runs) == 1 and runs[0]["counts_only"] and runs[0]["n_counted"] == n_tok,
              tr + ": runs export %s" % runs)
        check(routes == [], tr + ": a count-only run has no routes")
        s = stats_counts(db, tag)
        for j, l in enumerate(s["splits"]["all"]["layers"]):
            check(l["layer"] == moe[j] and l["tokens"] == n_tok and l["count"] == list(want[j]),
                  "%s: stats layer %d" % (tr, moe[j]))
        check(s["splits"]["prompt"]["available"] is False, tr + ": prompt split")
    # stat mode: all-reduced over the 2 TP ranks (each counted every token)
    steps = torch.zeros((128, n_layers, E), dtype=torch.int32)
    for i, lg in enumerate(logical):
        for j, l in enumerate(moe):
            np_ = np.zeros(E, np.int64)
            np.add.at(np_, lg[:, j, :].reshape(-1), 1)
            steps[i, l] = torch.as_tensor(np_ * 2, dtype=torch.int32)
    sp = path("expert_distribution_recorder_1718000000.0.pt")
    torch.save(dict(rank=0, logical_count=steps, average_utilization_rate_over_window=None), sp)
    refused(["sglang-dump", sp, "--config", cfgp("small"), "-o", path("st0")],
            "--ranks-per-token")
    refused(["sglang-dump", sp, "--config", cfgp("small"), "-o", path("st1"),
             "--ranks-per-token", "3"], "not divisible by --ranks-per-token 3")
    convert_ok(["sglang-dump", sp, "--config", cfgp("small"), "-o", path("st"),
                "--ranks-per-token", "2"])
    check((np.load(path("st", "counts.npy"))[0] == want).all(), "stat: counts")
    # an EPLB load record in JSON, as --init-expert-location takes it
    jp = write_json(path("eplb_record.json"), {"logical_count": steps.sum(0).tolist()})
    convert_ok(["sglang-dump", jp, "--config", cfgp("small"), "-o", path("rec"),
                "--ranks-per-token", "2"])
    check((np.load(path("rec", "counts.npy"))[0] == want).all(), "EPLB record: counts")
    print("sglang per_pass (TP copies counted once, DeepEP slices summed), stat (--ranks-per-"
          "token) and EPLB record: count-only runs with exact counts of %d tokens" % n_tok)


# ---- SGLang /generate ----------------------------------------------------------

def sglang_response(prompt, out, arr, dtype, advertise, start=0):
    flat = arr.reshape(-1).astype({"int32": np.int32, "uint16": np.uint16,
                                   "uint8": np.uint8}[dtype])
    mi = {"id": "r%d" % len(prompt), "finish_reason": {"type": "length", "length": len(out)},
          "prompt_tokens": len(prompt), "completion_tokens": len(out), "cached_tokens": 0,
          "routed_experts": base64.b64encode(flat.tobytes()).decode("utf-8")}
    if advertise:
        mi["routed_experts_dtype"] = dtype
    r = {"text": "...", "output_ids": out, "meta_info": mi, "input_ids": prompt}
    if start:
        r["routed_experts_start_len"] = start
    return r


@case
def sglang_generate_dtypes_offsets_round_trip():
    """(7) routed_experts_dtype uint8 / uint16 (SGLANG_ROUTED_EXPERTS_DTYPE),
    legacy int32 without it; routed_experts_start_len honoured."""
    n_layers, moe, E, k = DSV3["num_hidden_layers"], [2, 3, 4, 5], 32, 4
    reqs, seqs = [], []
    for i, (dtype, adv, start) in enumerate((("uint8", True, 0), ("uint16", True, 0),
                                             ("int32", False, 0), ("uint8", True, 3))):
        prompt = RNG.integers(0, 1000, 6 + i).tolist()
        out = RNG.integers(0, 1000, 4).tolist()
        n = len(prompt) + len(out) - 1 - start
        arr = np.zeros((n, n_layers, k), np.int64)          # dense layers: 0
        for l in moe:
            arr[:, l, :] = distinct_topk(n, E, k)
        reqs.append(sglang_response(prompt, out, arr, dtype, adv, start))
        seqs.append((len(prompt), len(prompt) + len(out), routes_from(arr[:, moe, :], moe, start)))
    with open(path("sg_gen.jsonl"), "w") as f:
        for r in reqs:
            f.write(json.dumps(r) + "\n")
    convert_ok(["sglang", path("sg_gen.jsonl"), "--config", cfgp("dsv3"), "-o", path("sg_gen")])
    compare(path("sg_gen"), "sggen", seqs, weights=False)
    # 6 MoE + 6 dense layers x uint16 is 12 bytes a row, as 6 layers x int32 would be -
    # with two readings and no routed_experts_dtype, refused; the option decides
    amb = dict(DSV3, num_hidden_layers=8, first_k_dense_replace=4)
    write_json(path("dsv3", "amb.json"), amb)
    arr = np.zeros((5, 8, 4), np.int64)
    for l in range(4, 8):
        arr[:, l, :] = distinct_topk(5, 32, 4)
    r = sglang_response(list(range(3)), [7, 8, 9], arr, "uint16", False)
    with open(path("sg_amb.jsonl"), "w") as f:
        f.write(json.dumps(r) + "\n")
    refused(["sglang", path("sg_amb.jsonl"), "--config", path("dsv3", "amb.json"), "-o",
             path("sg_amb")], "read as 4 layers of int32 or as 8 layers of uint16",
            "--routed-experts-dtype")
    convert_ok(["sglang", path("sg_amb.jsonl"), "--config", path("dsv3", "amb.json"), "-o",
                path("sg_amb"), "--routed-experts-dtype", "uint16"])
    print("sglang /generate: uint8, uint16 (advertised), int32 (legacy), start_len 3: routes "
          "exact; a size with two readings refused until --routed-experts-dtype")


@case
def sglang_generate_physical_ids():
    n_layers, moe, E, k = 6, [2, 3, 4, 5], 32, 4
    p2l = np.tile(np.concatenate([np.arange(E), np.arange(8)]), (n_layers, 1))
    np.save(path("p2l.npy"), p2l)
    prompt, out = list(range(5)), [9, 9, 9]
    arr = np.zeros((7, n_layers, k), np.int64)
    for l in moe:
        arr[:, l, :] = distinct_topk(7, E, k)
    phys = np.where((arr < 8) & (np.arange(7)[:, None, None] % 2 == 0), arr + E, arr)
    for l in range(n_layers):
        if l not in moe:
            phys[:, l, :] = 0
    with open(path("sg_phys.jsonl"), "w") as f:
        f.write(json.dumps(sglang_response(prompt, out, phys, "int32", True)) + "\n")
    refused(["sglang", path("sg_phys.jsonl"), "--config", cfgp("dsv3"), "-o", path("sg_ph0")],
            "--physical-to-logical")
    convert_ok(["sglang", path("sg_phys.jsonl"), "--config", cfgp("dsv3"), "-o",
                path("sg_ph"), "--physical-to-logical", path("p2l.npy")])
    compare(path("sg_ph"), "sgph", [(5, 8, routes_from(arr[:, moe, :], moe))], weights=False)
    print("sglang /generate: physical ids of redundant experts mapped back with the EPLB map")


# ---- vLLM -----------------------------------------------------------------------

def vllm_capture(n_pos, n_axis_layers, moe_index, E, k, fill=0):
    """The capturer's int16 host buffer [positions, layers, top_k]."""
    buf = np.full((n_pos, n_axis_layers, k), fill, np.int16)
    for a in moe_index:
        buf[:, a, :] = distinct_topk(n_pos, E, k)
    return buf


@case
def vllm_null_prompt_routed_experts_and_split_round_trip():
    """(8) HTTP responses with "prompt_routed_experts": null (a release
    returning everything in routed_experts), the split form, offline
    records, -1 rows, routed_experts_prompt_start."""
    n_layers, moe, E, k = 6, [2, 3, 4, 5], 32, 4
    lines, seqs = [], []
    # 1: HTTP, whole sequence in choices[0].routed_experts, prompt null, all layers
    prompt, out = RNG.integers(0, 999, 7).tolist(), RNG.integers(0, 999, 4).tolist()
    buf = vllm_capture(10, n_layers, moe, E, k)
    lines.append({"id": "chatcmpl-1", "object": "chat.completion", "model": "m",
                  "choices": [{"index": 0, "message": {"role": "assistant", "content": "x"},
                               "finish_reason": "length", "token_ids": out,
                               "routed_experts": buf.tolist()}],
                  "usage": {"prompt_tokens": 7, "completion_tokens": 4},
                  "prompt_token_ids": prompt, "prompt_routed_experts": None})
    seqs.append((7, 11, routes_from(buf[:, moe, :], moe)))
    # 2: HTTP, split: prompt rows apart, MoE-layer axis (newer capturer), -1
    #    fill, two choices sharing the prompt
    prompt = RNG.integers(0, 999, 5).tolist()
    pbuf = vllm_capture(5, 4, range(4), E, k, fill=-1)
    pbuf[1] = -1                                  # a position that was not computed
    choices = []
    for ci in range(2):
        out = RNG.integers(0, 999, 3).tolist()
        g = vllm_capture(2, 4, range(4), E, k, fill=-1)
        choices.append({"index": ci, "token_ids": out, "routed_experts": g.tolist()})
        seqs.append((5, 8, routes_from(np.concatenate([pbuf, g]), moe)))
    lines.append({"id": "cmpl-2", "choices": choices, "prompt_token_ids": prompt,
                  "prompt_routed_experts": pbuf.tolist(),
                  "usage": {"prompt_tokens_details": {"cached_tokens": 0}}})
    # 3: offline record as docs/moetrace.md writes it, prompt start 3
    prompt, out = RNG.integers(0, 999, 6).tolist(), RNG.integers(0, 999, 3).tolist()
    pbuf = vllm_capture(3, n_layers, moe, E, k)
    g = vllm_capture(2, n_layers, moe, E, k)
    lines.append({"prompt": "a prompt", "prompt_token_ids": prompt, "output_token_ids": out,
                  "routed_experts": g.tolist(), "prompt_routed_experts": pbuf.tolist(),
                  "routed_experts_prompt_start": 3, "num_cached_tokens": 0})
    seqs.append((6, 9, routes_from(np.concatenate([pbuf, g])[:, moe, :], moe, 3)))
    with open(path("vllm.jsonl"), "w") as f:
        for r in lines:
            f.write(json.dumps(r) + "\n")
    convert_ok(["vllm", path("vllm.jsonl"), "--config", cfgp("dsv3"), "-o", path("vllm_t")])
    compare(path("vllm_t"), "vllm", seqs, weights=False)
    print("vllm: prompt_routed_experts null, split arrays, MoE-only axis, -1 rows, two choices, "
          "routed_experts_prompt_start: routes exact")


@case
def vllm_uncomputed_rows_refused():
    n_layers, moe, E, k = 6, [2, 3, 4, 5], 32, 4
    prompt, out = list(range(6)), [1, 2, 3]
    buf = vllm_capture(8, n_layers, moe, E, k)
    buf[:3] = 0                           # prefix-cache hit in a zero-filling release
    with open(path("vllm_zero.jsonl"), "w") as f:
        f.write(json.dumps({"prompt_token_ids": prompt, "output_token_ids": out,
                            "routed_experts": buf.tolist(), "num_cached_tokens": 3}) + "\n")
    refused(["vllm", path("vllm_zero.jsonl"), "--config", cfgp("dsv3"), "-o", path("vz")],
            "position 0", "--no-enable-prefix-caching")
    # the whole array or only the generated tokens?  with a 1-token prompt, both fit
    buf = vllm_capture(3, n_layers, moe, E, k)
    with open(path("vllm_amb.jsonl"), "w") as f:
        f.write(json.dumps({"prompt_token_ids": [5], "output_token_ids": [1, 2, 3],
                            "routed_experts": buf.tolist(),
                            "prompt_routed_experts": None}) + "\n")
    refused(["vllm", path("vllm_amb.jsonl"), "--config", cfgp("dsv3"), "-o", path("va")],
            "cannot tell")
    print("vllm: uncomputed (zero) rows and a row count with two readings refused")


@case
def vllm_llama4_dense_layers_round_trip():
    """(6) Llama-4 interleaves dense and MoE layers; top-1 ids of vLLM's
    zero rows for dense layers are not expert 0."""
    moe = [1, 3, 5, 7]
    n_layers, E, k = 8, 16, 1
    prompt, out = list(range(9)), [1, 2]
    buf = vllm_capture(10, n_layers, moe, E, k)
    with open(path("vllm_l4.jsonl"), "w") as f:
        f.write(json.dumps({"prompt_token_ids": prompt, "output_token_ids": out,
                            "routed_experts": buf.tolist(), "num_cached_tokens": 0}) + "\n")
    convert_ok(["vllm", path("vllm_l4.jsonl"), "--config", cfgp("llama4"), "-o", path("l4")])
    meta = json.load(open(path("l4", "meta.json")))
    check(meta["moe_layers"] == moe, "llama4 moe_layers %s" % meta["moe_layers"])
    compare(path("l4"), "l4", [(9, 11, routes_from(buf[:, moe, :], moe))], weights=False)
    # the same with moe_layers written out in the config
    l4b = dict(LLAMA4, text_config=dict(LLAMA4["text_config"], moe_layers=moe,
                                        interleave_moe_layer_step=2))
    check(mc.model_shape(l4b)[3] == moe, "explicit moe_layers")
    print("vllm: Llama-4 (interleave_moe_layer_step 2): routes only at layers 1,3,5,7, exact")


# ---- Hugging Face transformers ----------------------------------------------------

def ref_route(kind, logits, k, norm=False, bias=None, n_group=1, topk_group=1, scale=1.0):
    """The routers of transformers' modeling code, in float64 torch."""
    x = torch.as_tensor(logits, dtype=torch.float64)
    if kind == "softmax":                                 # Qwen3-MoE, OLMoE (and Mixtral)
        p = torch.softmax(x, dim=-1)
        w, i = torch.topk(p, k, dim=-1)
        if norm:
            w = w / w.sum(dim=-1, keepdim=True)
    elif kind == "softmax_topk":                          # gpt-oss
        v, i = torch.topk(x, k, dim=-1)
        w = torch.softmax(v, dim=1)
    elif kind == "sigmoid":                               # DeepSeek-V3
        s = x.sigmoid()
        sc = s + torch.as_tensor(bias, dtype=torch.float64)[None, :]
        E = x.shape[1]
        gs = sc.view(-1, n_group, E // n_group).topk(2, dim=-1)[0].sum(dim=-1)
        gi = torch.topk(gs, k=topk_group, dim=-1, sorted=False)[1]
        gm = torch.zeros_like(gs).scatter_(1, gi, 1)
        sm = gm.unsqueeze(-1).expand(-1, n_group, E // n_group).reshape(-1, E)
        sc = sc.masked_fill(~sm.bool(), 0.0)
        i = torch.topk(sc, k=k, dim=-1, sorted=True)[1]
        w = s.gather(1, i)
        if norm:
            w = w / (w.sum(dim=-1, keepdim=True) + 1e-20)
        w = w * scale
    else:                                                 # Llama-4
        v, i = torch.topk(x, k, dim=1)
        w = torch.sigmoid(v)
    return i.numpy(), w.numpy()


def hf_case(name, cfg, kind, n_exp, k, moe, probs_too=False, **kw):
    b, t = 2, 7
    ids = RNG.integers(0, 30000, (b, t))
    mask = np.ones((b, t), np.int64)
    mask[1, :2] = 0                                      # left padding of sequence 1
    plens = np.array([4, 3])
    logits = [RNG.normal(size=(b * t, n_exp)) for _ in moe]
    seqs = []
    for s in range(b):
        r = {}
        real = np.nonzero(mask[s])[0]
        for j, l in enumerate(moe):
            bias = kw.get("biases", [None] * len(moe))[j]
            i, w = ref_route(kind, logits[j][s * t + real], k, kw.get("norm", False), bias,
                             kw.get("n_group", 1), kw.get("topk_group", 1), kw.get("scale", 1.0))
            for p in range(len(real)):
                r[(p, l)] = ([int(e) for e in i[p]], [float(x) for x in w[p]])
        seqs.append((int(plens[s]), int(mask[s].sum()), r))
    base = dict(input_ids=ids, attention_mask=mask, prompt_lens=plens)
    for j in range(len(moe)):
        base["router_logits_%d" % j] = logits[j].astype(np.float32)
        if "biases" in kw:
            base["e_score_correction_bias_%d" % j] = kw["biases"][j].astype(np.float32)
    out = []
    np.savez(path(name + ".npz"), **base)
    convert_ok(["hf", path(name + ".npz"), "--config", cfg, "-o", path(name + "_t")])
    d, _ = compare(path(name + "_t"), name, seqs)
    out.append(d)
    if probs_too:
        # transformers v5 before PR #45131: router_logits were softmax outputs
        pr = dict(base)
        for j in range(len(moe)):
            pr["router_logits_%d" % j] = torch.softmax(
                torch.as_tensor(logits[j], dtype=torch.float32), dim=-1).numpy()
        np.savez(path(name + "_p.npz"), **pr)
        convert_ok(["hf", path(name + "_p.npz"), "--config", cfg, "-o", path(name + "_p")])
        d, _ = compare(path(name + "_p"), name + "p", seqs)
        out.append(d)
    return max(out), logits, base


@case
def hf_probabilities_detected():
    """(4) Mixtral, Qwen3-MoE (norm_topk_prob), OLMoE: router outputs given as
    probabilities (transformers v5 before PR #45131) are not softmaxed again."""
    # one unpadded sequence, as output_router_logits returns it for OLMoE
    lg = [RNG.normal(size=(6, 16)) for _ in range(3)]
    np.savez(path("olmoe1.npz"), input_ids=np.arange(6)[None, :],
             **{"router_logits_%d" % j: torch.softmax(torch.as_tensor(x, dtype=torch.float32),
                                                       dim=-1).numpy() for j, x in enumerate(lg)})
    convert_ok(["hf", path("olmoe1.npz"), "--config", cfgp("olmoe"), "-o", path("olmoe1")])
    w = np.load(path("olmoe1", "weights.npy"))
    d1 = max(float(np.abs(w[:, j] - ref_route("softmax", x, 4)[1]).max()) for j, x in enumerate(lg))
    check(d1 < 3e-7, "OLMoE weights from probabilities differ by %g" % d1)
    res = []
    # Mixtral renormalises the top-k probabilities: the softmax over the top-k logits
    d, _, _ = hf_case("mixtral", cfgp("mixtral"), "softmax", 8, 2, [0, 1, 2], True, norm=True)
    res.append(("Mixtral", d))
    d, _, _ = hf_case("qwen3", cfgp("qwen3"), "softmax", 16, 4, [1, 2, 3], True, norm=True)
    res.append(("Qwen3-MoE", d))
    d, lg, base = hf_case("olmoe", cfgp("olmoe"), "softmax", 16, 4, [0, 1, 2], True)
    res.append(("OLMoE", d))
    for n, d in res:
        check(d < 3e-7, "%s weights differ by %g" % (n, d))
    # half the rows probabilities, half logits: refused; --router-output decides
    mixed = dict(base)
    mixed["router_logits_0"] = torch.softmax(torch.as_tensor(lg[0], dtype=torch.float32),
                                              dim=-1).numpy()
    np.savez(path("olmoe_mixed.npz"), **mixed)
    refused(["hf", path("olmoe_mixed.npz"), "--config", cfgp("olmoe"), "-o", path("om")],
            "probability distributions", "--router-output")
    refused(["hf", path("olmoe_mixed.npz"), "--config", cfgp("olmoe"), "-o", path("om"),
             "--router-output", "probs"], "are not probability distributions")
    print("hf: probabilities detected - largest weight difference %s (one sequence, OLMoE: "
          "%.2g)" % (", ".join("%s %.2g" % x for x in res), d1))


@case
def hf_gpt_oss_and_llama4_round_trip():
    d1, lg, base = hf_case("gptoss", cfgp("gptoss"), "softmax_topk", 8, 2, [0, 1, 2])
    # the older gpt-oss router returned router_scores (softmax of the top-k,
    # scattered, zeros elsewhere) as its first output
    sc = dict(base)
    for j in range(3):
        x = torch.as_tensor(lg[j], dtype=torch.float32)
        v, i = torch.topk(x, 2, dim=-1)
        sc["router_logits_%d" % j] = torch.zeros_like(x).scatter_(
            1, i, torch.softmax(v, dim=1)).numpy()
    np.savez(path("gptoss_s.npz"), **sc)
    convert_ok(["hf", path("gptoss_s.npz"), "--config", cfgp("gptoss"), "-o", path("gptoss_s")])
    d2, _, _ = hf_case("l4hf", cfgp("llama4"), "sigmoid_topk", 16, 1, [1, 3, 5, 7])
    for n, d in (("gpt-oss", d1), ("Llama-4", d2)):
        check(d < 3e-7, "%s weights differ by %g" % (n, d))
    print("hf: gpt-oss (softmax over top-k, also from router_scores) and Llama-4 (sigmoid of "
          "the top logit, dense layers skipped): largest weight difference %.2g, %.2g" % (d1, d2))


@case
def hf_deepseek_v3_bias_required():
    """(5) DeepSeek-V3 selects by sigmoid + e_score_correction_bias in the
    best groups; without the bias the experts are wrong: refused."""
    moe = [2, 3, 4, 5]
    np.savez(path("dsv3_nobias.npz"), input_ids=np.arange(5),
             **{"router_logits_%d" % j: RNG.normal(size=(5, 32)).astype(np.float32)
                for j in range(len(moe))})
    refused(["hf", path("dsv3_nobias.npz"), "--config", cfgp("dsv3"), "-o", path("dn")],
            "e_score_correction_bias_0 missing", "mlp.gate.e_score_correction_bias")
    biases = [RNG.normal(scale=0.3, size=32) for _ in moe]
    d, lg, base = hf_case("dsv3hf", cfgp("dsv3"), "sigmoid", 32, 4, moe, norm=True,
                          biases=biases, n_group=4, topk_group=2, scale=2.5)
    check(d < 3e-7, "DeepSeek-V3 weights differ by %g" % d)
    # how many routes the bias changes in this trace (what was imported before)
    wrong = 0
    for j in range(len(moe)):
        a = ref_route("sigmoid", lg[j], 4, True, biases[j], 4, 2, 2.5)[0]
        z = ref_route("sigmoid", lg[j], 4, True, np.zeros(32), 4, 2, 2.5)[0]
        wrong += int((np.sort(a, 1) != np.sort(z, 1)).any(axis=1).sum())
    check(wrong > 0, "the bias should change some routes")
    # the gate of transformers 4.5x returns (topk_indices, topk_weights): a
    # forward hook saves those directly
    hook = {"input_ids": base["input_ids"], "attention_mask": base["attention_mask"],
            "prompt_lens": base["prompt_lens"]}
    seqs = []
    for j in range(len(moe)):
        i, w = ref_route("sigmoid", lg[j], 4, True, biases[j], 4, 2, 2.5)
        hook["topk_ids_%d" % j], hook["topk_weights_%d" % j] = i, w.astype(np.float32)
    np.savez(path("dsv3_hook.npz"), **hook)
    convert_ok(["hf", path("dsv3_hook.npz"), "--config", cfgp("dsv3"), "-o", path("dsv3_hook")])
    a = np.load(path("dsv3hf_t", "experts.npy"))
    b2 = np.load(path("dsv3_hook", "experts.npy"))
    check((a == b2).all(), "hook ids = routed logits")
    del seqs
    print("hf: DeepSeek-V3 (bias, 4 groups keep 2, scaling 2.5): largest weight difference %.2g; "
          "without the bias refused (%d routes of this trace would change)" % (d, wrong))


@case
def hf_unknown_router_refused():
    v2 = {"model_type": "deepseek_v2", "num_hidden_layers": 2, "n_routed_experts": 8,
          "num_experts_per_tok": 2, "topk_method": "group_limited_greedy"}
    write_json(path("v2.json"), v2)
    np.savez(path("v2.npz"), input_ids=np.arange(3), router_logits_0=RNG.normal(size=(3, 8)),
             router_logits_1=RNG.normal(size=(3, 8)))
    refused(["hf", path("v2.npz"), "--config", path("v2.json"), "-o", path("v2")],
            "'deepseek_v2'", "topk_ids_<j>")
    np.savez(path("pad.npz"), input_ids=np.zeros((2, 3), np.int64),
             router_logits_0=RNG.normal(size=(6, 16)), router_logits_1=RNG.normal(size=(6, 16)),
             router_logits_2=RNG.normal(size=(6, 16)))
    refused(["hf", path("pad.npz"), "--config", cfgp("olmoe"), "-o", path("pad")],
            "no attention_mask")
    print("hf: an unknown router and a batch without attention_mask refused")


def main():
    failed = 0
    for f in CASES:
        try:
            f()
        except Fail as e:
            failed += 1
            print("FAIL %s: %s" % (f.__name__, e))
        except BaseException as e:  # noqa: BLE001 - a crash or an exit is a failure too
            failed += 1
            print("FAIL %s: %s: %s" % (f.__name__, type(e).__name__, e))
    print("convert cases: %d passed, %d failed" % (len(CASES) - failed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
