#!/usr/bin/env python3
"""moetrace_convert.py - routing traces of vLLM, SGLang and Hugging Face
transformers to moetrace v1 (docs/moetrace.md), for `moescope import`.

Needs numpy only; torch only for the SGLang expert-distribution dump (it is
a torch.save file), imported when that converter runs.

  vllm         per request: `routed_experts` [tokens, num_hidden_layers, top_k]
               (numpy from CompletionOutput.routed_experts, base64 .npy bytes
               from the HTTP API, or the older `prompt_routed_experts` +
               `routed_experts` int16 lists); dense layers are zero rows and
               are dropped using the model config.
  sglang       per request: meta_info["routed_experts"] = base64 of raw int32
               (-1, num_hidden_layers, top_k); physical ids mapped to logical
               ones with --physical-to-logical (EPLB).
  sglang-dump  the expert distribution recorder's per_token dump (torch).
  hf           router logits of transformers (output_router_logits=True), one
               (tokens, n_experts) array per MoE layer, in an .npz; top-k and
               weights computed with the model's gating.

Requests files are JSON Lines, one request per line; see docs/moetrace.md
for the keys read.  Every converter writes DIR/meta.json, DIR/index.npy,
DIR/experts.npy and, when the source has them, DIR/weights.npy and
DIR/logits.npy.  Rows are written into memory-mapped .npy files, so a large
requests file is converted in two passes (count, then fill) without holding
the whole trace in memory.
"""

import argparse
import base64
import io
import json
import os
import sys

import numpy as np


class ConvertError(Exception):
    """Bad input: the message names the request, field and value."""


# ---- model config ---------------------------------------------------------


def model_shape(cfg):
    """(num_layers, num_experts, top_k, moe_layers) from a HF config dict.

    MoE layers follow the configs of the architectures that have dense
    layers: DeepSeek-V2/V3, GLM-4.5, Kimi (first_k_dense_replace,
    moe_layer_freq), Qwen2/3-MoE (mlp_only_layers, decoder_sparse_step)."""
    if "text_config" in cfg and "num_hidden_layers" not in cfg:
        cfg = cfg["text_config"]
    try:
        n_layers = int(cfg["num_hidden_layers"])
    except KeyError:
        raise ConvertError("config: field 'num_hidden_layers' missing")
    n_exp = None
    for key in ("n_routed_experts", "num_experts", "num_local_experts", "moe_num_experts"):
        if cfg.get(key):
            n_exp = int(cfg[key])
            break
    if not n_exp:
        raise ConvertError("config: no expert count (n_routed_experts, num_experts or "
                           "num_local_experts)")
    top_k = cfg.get("num_experts_per_tok") or cfg.get("moe_top_k") or cfg.get("top_k")
    if not top_k:
        raise ConvertError("config: field 'num_experts_per_tok' missing")
    first_dense = int(cfg.get("first_k_dense_replace") or 0)
    freq = int(cfg.get("moe_layer_freq") or 1)
    mlp_only = set(int(x) for x in (cfg.get("mlp_only_layers") or []))
    step = int(cfg.get("decoder_sparse_step") or 1)
    moe = [l for l in range(n_layers)
           if l >= first_dense and l % freq == 0 and l not in mlp_only and (l + 1) % step == 0]
    if not moe:
        raise ConvertError("config: no MoE layer left after first_k_dense_replace / "
                           "mlp_only_layers / decoder_sparse_step")
    return n_layers, n_exp, int(top_k), moe


# ---- writer ---------------------------------------------------------------


class TraceWriter:
    """Writes a moetrace v1 directory of n_rows rows into memory-mapped .npy
    files; add() appends one sequence."""

    def __init__(self, out, n_rows, meta, k_slots, weights=False, logits=False):
        if os.path.exists(out):
            raise ConvertError("%s exists already (give a new directory)" % out)
        os.makedirs(out)
        self.out, self.meta, self.n, self.row = out, meta, n_rows, 0
        n_moe, n_exp = len(meta["moe_layers"]), meta["num_experts"]
        fmt = np.lib.format
        self.index = fmt.open_memmap(os.path.join(out, "index.npy"), "w+", "<i8", (n_rows, 3))
        self.experts = fmt.open_memmap(os.path.join(out, "experts.npy"), "w+", "<i2",
                                       (n_rows, n_moe, k_slots))
        self.weights = (fmt.open_memmap(os.path.join(out, "weights.npy"), "w+", "<f4",
                                        (n_rows, n_moe, k_slots)) if weights else None)
        self.logits = (fmt.open_memmap(os.path.join(out, "logits.npy"), "w+", "<f4",
                                       (n_rows, n_moe, n_exp)) if logits else None)
        self.meta["sequences"] = []

    def add(self, seq_id, tokens, prompt_len, experts, weights=None, logits=None, text=None,
            positions=None):
        """tokens [T]; experts [T, n_moe, K] with -1 = missing (rows beyond
        the routed ones may be left out: they become -1)."""
        t = len(tokens)
        if self.row + t > self.n:
            raise ConvertError("more rows than counted (%d)" % self.n)
        r = slice(self.row, self.row + t)
        self.index[r, 0] = seq_id
        self.index[r, 1] = np.arange(t) if positions is None else positions
        self.index[r, 2] = tokens
        ex = np.full(self.experts.shape[1:], -1, np.int16)
        self.experts[r] = ex
        m = min(t, len(experts))
        self.experts[self.row:self.row + m, :, :experts.shape[2]] = experts[:m]
        if self.weights is not None:
            self.weights[r] = 0
            if weights is not None:
                self.weights[self.row:self.row + m, :, :weights.shape[2]] = weights[:m]
        if self.logits is not None:
            self.logits[r] = 0
            if logits is not None:
                self.logits[self.row:self.row + m] = logits[:m]
        s = {"id": int(seq_id), "prompt_len": int(prompt_len)}
        if text is not None:
            s["text"] = text
        self.meta["sequences"].append(s)
        self.row += t

    def close(self):
        if self.row != self.n:
            raise ConvertError("%d rows written, %d counted" % (self.row, self.n))
        for a in (self.index, self.experts, self.weights, self.logits):
            if a is not None:
                a.flush()
        with open(os.path.join(self.out, "meta.json"), "w") as f:
            json.dump(self.meta, f, indent=1)


def base_meta(cfg, source, model):
    n_layers, n_exp, top_k, moe = model_shape(cfg)
    return {"format": "moetrace", "version": 1, "model": model, "source": source,
            "arch": cfg.get("model_type", ""), "num_layers": n_layers, "num_experts": n_exp,
            "top_k": top_k, "moe_layers": moe, "id_space": "logical"}


# ---- decoding the engines' arrays ------------------------------------------


def decode_npy_b64(s, where):
    """base64 of .npy bytes (vLLM HTTP) -> array."""
    try:
        raw = base64.b64decode(s, validate=True)
        return np.load(io.BytesIO(raw), allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - any decoding failure is bad input
        raise ConvertError("%s: not base64 of .npy bytes (%s)" % (where, e))


def decode_raw_b64(s, n_layers, top_k, where):
    """base64 of raw little-endian int32 (SGLang) -> [T, n_layers, top_k]."""
    try:
        raw = base64.b64decode(s, validate=True)
    except Exception as e:  # noqa: BLE001
        raise ConvertError("%s: not base64 (%s)" % (where, e))
    if len(raw) % (4 * n_layers * top_k):
        raise ConvertError("%s: %d bytes is not a multiple of 4 x num_hidden_layers (%d) x "
                           "top_k (%d)" % (where, len(raw), n_layers, top_k))
    return np.frombuffer(raw, "<i4").reshape(-1, n_layers, top_k)


def routed_array(v, where):
    if isinstance(v, np.ndarray):
        return v
    if isinstance(v, str):
        return decode_npy_b64(v, where)
    if isinstance(v, list):
        return np.asarray(v, dtype=np.int64)
    raise ConvertError("%s: expected an array, base64 .npy or a list" % where)


def keep_moe_layers(arr, meta, where, dense_value):
    """[T, num_layers, K] -> [T, n_moe, K]; checks that dense layers hold only
    dense_value (vLLM: 0, SGLang: 0 or -1) so a wrong config is noticed."""
    n_layers, moe = meta["num_layers"], meta["moe_layers"]
    if arr.ndim != 3 or arr.shape[1] != n_layers:
        raise ConvertError("%s: shape %s, expected [tokens, num_hidden_layers=%d, top_k]"
                           % (where, arr.shape, n_layers))
    dense = [l for l in range(n_layers) if l not in set(moe)]
    if dense and arr.shape[0]:
        bad = [l for l in dense if not np.isin(arr[:, l, :], dense_value).all()]
        if bad:
            raise ConvertError("%s: layer %d is dense in the config but has expert ids: wrong "
                               "config?" % (where, bad[0]))
    out = arr[:, moe, :].astype(np.int64)
    n_exp = meta["num_experts"]
    if ((out < -1) | (out >= n_exp)).any():
        v = out[(out < -1) | (out >= n_exp)][0]
        raise ConvertError("%s: expert id %d outside -1..%d" % (where, v, n_exp - 1))
    return out.astype(np.int16)


# ---- vLLM -----------------------------------------------------------------


def vllm_request(req, meta, where):
    """(tokens, prompt_len, experts [T-1, n_moe, K]) of one vLLM request."""
    prompt = list(req.get("prompt_token_ids") or [])
    out = list(req.get("output_token_ids") or req.get("token_ids") or [])
    tokens = np.asarray(prompt + out, dtype=np.int64)
    if "prompt_routed_experts" in req:
        # older releases: the prompt part and the generated part apart
        a = routed_array(req["prompt_routed_experts"], where + ": prompt_routed_experts")
        b = routed_array(req.get("routed_experts") or [], where + ": routed_experts")
        if b.size == 0:
            b = np.zeros((0,) + a.shape[1:], a.dtype)
        arr = np.concatenate([a, b])
    else:
        if "routed_experts" not in req:
            raise ConvertError("%s: no field 'routed_experts'" % where)
        arr = routed_array(req["routed_experts"], where + ": routed_experts")
    if arr.shape[0] not in (len(tokens) - 1, len(tokens)):
        raise ConvertError("%s: routed_experts has %d rows for %d tokens (expected tokens - 1)"
                           % (where, arr.shape[0], len(tokens)))
    return tokens, len(prompt), keep_moe_layers(arr, meta, where, 0)


def read_requests(path):
    with open(path) as f:
        for i, line in enumerate(f, 1):
            if line.strip():
                try:
                    yield i, json.loads(line)
                except json.JSONDecodeError as e:
                    raise ConvertError("%s: line %d: %s" % (path, i, e))


def count_tokens(path, tokens_of):
    return sum(tokens_of(req) for _, req in read_requests(path))


def convert_requests(path, out, meta, decode):
    """Two passes over a requests file: count rows, then write them."""
    def n_tok(req):
        return len(req.get("prompt_token_ids") or req.get("input_ids") or []) + \
            len(req.get("output_token_ids") or req.get("token_ids") or req.get("output_ids") or [])
    n = count_tokens(path, n_tok)
    w = TraceWriter(out, n, meta, meta["top_k"])
    for i, req in read_requests(path):
        where = "%s: line %d" % (path, i)
        tokens, plen, ex = decode(req, meta, where)
        w.add(req.get("id", i - 1) if isinstance(req.get("id"), int) else i - 1, tokens, plen,
              ex, text=req.get("prompt") if isinstance(req.get("prompt"), str) else None)
    w.close()
    return n


# ---- SGLang ---------------------------------------------------------------


def sglang_request(req, meta, where, p2l=None):
    prompt = list(req.get("input_ids") or req.get("prompt_token_ids") or [])
    out = list(req.get("output_ids") or req.get("output_token_ids") or [])
    tokens = np.asarray(prompt + out, dtype=np.int64)
    mi = req.get("meta_info") or {}
    v = mi.get("routed_experts", req.get("routed_experts"))
    if v is None:
        raise ConvertError("%s: no meta_info.routed_experts" % where)
    if isinstance(v, str):
        arr = decode_raw_b64(v, meta["num_layers"], meta["top_k"], where)
    else:
        arr = np.asarray(v, dtype=np.int64).reshape(-1, meta["num_layers"], meta["top_k"])
    if p2l is not None:
        arr = physical_to_logical(arr, p2l, where)
    if arr.shape[0] not in (len(tokens) - 1, len(tokens)):
        raise ConvertError("%s: routed_experts has %d rows for %d tokens (expected tokens - 1)"
                           % (where, arr.shape[0], len(tokens)))
    return tokens, len(prompt), keep_moe_layers(arr, meta, where, [0, -1])


def physical_to_logical(arr, p2l, where):
    """arr [T, layers, K] of physical ids (-1 kept) -> logical ids with the
    map [layers, num_physical]."""
    p2l = np.asarray(p2l)
    if p2l.ndim != 2 or p2l.shape[0] != arr.shape[1]:
        raise ConvertError("%s: physical_to_logical map of shape %s for %d layers"
                           % (where, p2l.shape, arr.shape[1]))
    arr = np.asarray(arr, dtype=np.int64)
    if (arr >= p2l.shape[1]).any():
        raise ConvertError("%s: physical expert id %d >= %d physical experts"
                           % (where, arr.max(), p2l.shape[1]))
    layer = np.arange(arr.shape[1])[None, :, None]
    out = p2l[layer, np.clip(arr, 0, None)]
    return np.where(arr < 0, -1, out)


def sglang_dump(records, meta, out):
    """The expert distribution recorder's per_token dump: per forward pass
    topk_ids_of_layer [layers, tokens, K] (-1 = unused), input_ids,
    positions, extend_seq_lens; last_physical_to_logical_map [layers,
    physical].  Segments starting at position 0 open a sequence; later
    segments continue the open sequence whose next position they carry."""
    if isinstance(records, dict) and "records" in records:
        p2l = records.get("last_physical_to_logical_map")
        records = records["records"]
    elif isinstance(records, dict):
        p2l = records.get("last_physical_to_logical_map")
        records = [records]
    else:
        p2l = None
    seqs = []           # [tokens list, positions list, experts list, prompt_len]
    for ri, rec in enumerate(records):
        where = "dump record %d" % ri
        for key in ("topk_ids_of_layer", "input_ids", "positions", "extend_seq_lens"):
            if key not in rec:
                raise ConvertError("%s: key '%s' missing" % (where, key))
        m = rec.get("last_physical_to_logical_map", p2l)
        if m is None:
            raise ConvertError("%s: no last_physical_to_logical_map" % where)
        topk = np.asarray(rec["topk_ids_of_layer"]).transpose(1, 0, 2)   # [T, layers, K]
        topk = physical_to_logical(topk, np.asarray(m), where)
        ids = np.asarray(rec["input_ids"]).reshape(-1)
        pos = np.asarray(rec["positions"]).reshape(-1)
        lens = np.asarray(rec["extend_seq_lens"]).reshape(-1)
        if lens.sum() != len(ids) or len(pos) != len(ids) or topk.shape[0] != len(ids):
            raise ConvertError("%s: extend_seq_lens sum %d, %d input_ids, %d positions, %d "
                               "topk rows" % (where, lens.sum(), len(ids), len(pos),
                                              topk.shape[0]))
        start = 0
        for n in lens:
            seg = slice(start, start + int(n))
            start += int(n)
            p0 = int(pos[seg][0]) if n else 0
            if p0 == 0:
                seqs.append([[], [], [], int(n)])
                target = seqs[-1]
            else:
                cands = [s for s in seqs if s[1] and s[1][-1] == p0 - 1]
                if not cands:
                    raise ConvertError("%s: a segment at position %d continues no sequence"
                                       % (where, p0))
                target = cands[0]
            target[0].extend(ids[seg].tolist())
            target[1].extend(pos[seg].tolist())
            target[2].append(topk[seg])
    n = sum(len(s[0]) for s in seqs)
    k = max(s[2][0].shape[2] for s in seqs) if seqs else meta["top_k"]
    w = TraceWriter(out, n, meta, k)
    for i, s in enumerate(seqs):
        ex = keep_moe_layers(np.concatenate(s[2]), meta, "sequence %d" % i, [-1, 0])
        w.add(i, np.asarray(s[0]), s[3], ex, positions=np.asarray(s[1]))
    w.close()
    return n


# ---- Hugging Face transformers ----------------------------------------------


def hf_gating(cfg):
    """The routing rule of the model type: 'softmax' (weights renormalised
    over the top-k when norm), 'softmax_topk' (softmax over the chosen
    logits: Mixtral, gpt-oss) or 'sigmoid' (DeepSeek-V3 / GLM-4.5)."""
    mt = cfg.get("model_type", "")
    if cfg.get("scoring_func") == "sigmoid" or mt in ("deepseek_v3", "glm4_moe", "kimi_k2"):
        return "sigmoid", bool(cfg.get("norm_topk_prob", True))
    if mt in ("mixtral", "gpt_oss"):
        return "softmax_topk", True
    return "softmax", bool(cfg.get("norm_topk_prob", False))


def hf_route(logits, cfg, bias=None):
    """logits [T, E] of one layer -> (experts [T, k], weights [T, k])."""
    _, n_exp, k, _ = model_shape(cfg)
    gating, norm = hf_gating(cfg)
    x = logits.astype(np.float64)
    if gating == "sigmoid":
        scores = 1.0 / (1.0 + np.exp(-x))
        sel = scores + (bias if bias is not None else 0.0)
        n_group = int(cfg.get("n_group") or 1)
        topk_group = int(cfg.get("topk_group") or n_group)
        if n_group > 1:
            g = sel.reshape(len(x), n_group, -1)
            gscore = np.sort(g, axis=2)[:, :, -2:].sum(axis=2)
            keep = np.argsort(-gscore, axis=1, kind="stable")[:, :topk_group]
            mask = np.zeros((len(x), n_group), bool)
            np.put_along_axis(mask, keep, True, axis=1)
            sel = np.where(np.repeat(mask, n_exp // n_group, axis=1), sel, -np.inf)
        idx = np.argsort(-sel, axis=1, kind="stable")[:, :k]
        w = np.take_along_axis(scores, idx, axis=1)
        if norm:
            w = w / (w.sum(axis=1, keepdims=True) + 1e-20)
        w = w * float(cfg.get("routed_scaling_factor") or 1.0)
    elif gating == "softmax_topk":
        idx = np.argsort(-x, axis=1, kind="stable")[:, :k]
        top = np.take_along_axis(x, idx, axis=1)
        e = np.exp(top - top.max(axis=1, keepdims=True))
        w = e / e.sum(axis=1, keepdims=True)
    else:
        e = np.exp(x - x.max(axis=1, keepdims=True))
        p = e / e.sum(axis=1, keepdims=True)
        idx = np.argsort(-p, axis=1, kind="stable")[:, :k]
        w = np.take_along_axis(p, idx, axis=1)
        if norm:
            w = w / w.sum(axis=1, keepdims=True)
    return idx.astype(np.int16), w.astype(np.float32)


def hf_convert(npz, cfg, meta, out, keep_logits=True):
    """npz: input_ids [T] (or [B, T]), router_logits [n_moe, T(*B), E] or
    router_logits_0.. per MoE layer, optional prompt_lens [B] and
    e_score_correction_bias [n_moe, E]."""
    ids = np.asarray(npz["input_ids"])
    if ids.ndim == 1:
        ids = ids[None, :]
    b, t = ids.shape
    n_moe = len(meta["moe_layers"])
    if "router_logits" in npz:
        rl = np.asarray(npz["router_logits"])
    else:
        rl = np.stack([np.asarray(npz["router_logits_%d" % i]) for i in range(n_moe)])
    if rl.shape[0] != n_moe or rl.shape[1] != b * t or rl.shape[2] != meta["num_experts"]:
        raise ConvertError("router_logits shape %s, expected [%d MoE layers, %d tokens, %d "
                           "experts]" % (rl.shape, n_moe, b * t, meta["num_experts"]))
    bias = npz["e_score_correction_bias"] if "e_score_correction_bias" in npz else None
    plens = np.asarray(npz["prompt_lens"]) if "prompt_lens" in npz else np.full(b, t)
    k = meta["top_k"]
    ex = np.empty((b * t, n_moe, k), np.int16)
    w = np.empty((b * t, n_moe, k), np.float32)
    for j in range(n_moe):
        ex[:, j], w[:, j] = hf_route(rl[j], cfg, None if bias is None else bias[j])
    tw = TraceWriter(out, b * t, meta, k, weights=True, logits=keep_logits)
    lg = rl.transpose(1, 0, 2).astype(np.float32)
    for s in range(b):
        r = slice(s * t, (s + 1) * t)
        tw.add(s, ids[s], int(plens[s]), ex[r], w[r], lg[r] if keep_logits else None)
    tw.close()
    return b * t


# ---- command line -------------------------------------------------------------


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("source", choices=["vllm", "sglang", "sglang-dump", "hf"])
    ap.add_argument("input", help="requests .jsonl (vllm, sglang), dump file (sglang-dump) "
                    "or .npz (hf)")
    ap.add_argument("--config", required=True, help="the model's config.json")
    ap.add_argument("-o", "--out", required=True, help="moetrace directory to create")
    ap.add_argument("--model", help="model name for meta.json (default: config "
                    "_name_or_path or the config's directory)")
    ap.add_argument("--physical-to-logical", help="SGLang EPLB map [layers, physical] .npy")
    ap.add_argument("--no-logits", action="store_true", help="hf: leave logits.npy out")
    a = ap.parse_args(argv)
    try:
        with open(a.config) as f:
            cfg = json.load(f)
        name = a.model or cfg.get("_name_or_path") or os.path.basename(
            os.path.dirname(os.path.abspath(a.config)))
        src = "sglang" if a.source.startswith("sglang") else a.source
        meta = base_meta(cfg, src, name)
        if a.source == "vllm":
            n = convert_requests(a.input, a.out, meta, vllm_request)
        elif a.source == "sglang":
            p2l = np.load(a.physical_to_logical) if a.physical_to_logical else None
            n = convert_requests(a.input, a.out, meta,
                                 lambda r, m, w: sglang_request(r, m, w, p2l))
        elif a.source == "sglang-dump":
            import torch  # only this converter needs it
            obj = torch.load(a.input, map_location="cpu", weights_only=False)
            n = sglang_dump(to_numpy(obj), meta, a.out)
        else:
            with np.load(a.input, allow_pickle=False) as npz:
                n = hf_convert(npz, cfg, meta, a.out, keep_logits=not a.no_logits)
    except (ConvertError, OSError, ValueError) as e:
        print("moetrace_convert: %s" % e, file=sys.stderr)
        return 1
    print("wrote %s: %d tokens, %d MoE layers of %d" % (a.out, n, len(meta["moe_layers"]),
                                                       meta["num_layers"]))
    return 0


def to_numpy(obj):
    """Tensors inside dicts/lists -> numpy arrays."""
    if hasattr(obj, "detach"):
        return obj.detach().cpu().numpy()
    if isinstance(obj, dict):
        return {k: to_numpy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_numpy(v) for v in obj]
    return obj


if __name__ == "__main__":
    sys.exit(main())
