#!/usr/bin/env python3
"""moetrace_convert.py - routing traces of vLLM, SGLang and Hugging Face
transformers to moetrace v1 (docs/moetrace.md), for `moescope import`.

The rule of every converter: a trace is converted exactly, or refused with a
message that says why and what to use instead.  Nothing is guessed: where the
input can be read two ways (a layer axis, a dtype, router probabilities or
logits, a prompt boundary, which request a token belongs to), the converter
refuses and names the option or the server setting that decides it.

  vllm         vLLM requests: `routed_experts` [tokens, layers, top_k] of
               CompletionOutput (offline) or of `choices[i]` (HTTP), with the
               prompt's rows in `prompt_routed_experts` when the release
               splits them (null there is fine); `routed_experts_prompt_start`
               honoured; -1 rows (not computed) kept as missing.
  sglang       SGLang /generate responses: meta_info["routed_experts"] =
               base64 of [seqlen - 1 - routed_experts_start_len, layers,
               top_k] in the dtype of meta_info["routed_experts_dtype"]
               (SGLANG_ROUTED_EXPERTS_DTYPE: int32, uint16, uint8).
  sglang-dump  the expert distribution recorder's dumps (torch.save files,
               one per rank): per_token (tokens and routes), per_pass and stat
               (per-layer counts only: a count trace), or an EPLB load record
               ({"logical_count": ...}, .pt or .json).
  hf           transformers router outputs in an .npz: router logits (or
               probabilities: detected, or --router-output) per MoE layer,
               routed with the model's own rule; or top-k ids and weights
               captured from the router module.

Needs numpy; torch (Debian: python3-torch) only for sglang-dump .pt files.
Requests files are JSON Lines, one request per line.  Token traces are
written into memory-mapped .npy files in two passes over the requests file
(count, then fill), so a large file is converted in bounded memory.
"""

import argparse
import base64
import io
import json
import os
import sys

try:
    import numpy as np
except ImportError:
    sys.exit("moetrace_convert: needs numpy, which %s lacks: run it with a python3 that has "
             "it (Debian: apt-get install python3-numpy; then /usr/bin/python3 %s)"
             % (sys.executable, " ".join(sys.argv)))


class ConvertError(Exception):
    """Bad or ambiguous input: the message names the request, field and value,
    and what to do instead."""


# ---- model config -----------------------------------------------------------


def text_config(cfg):
    """The language model's part of a transformers config: multimodal and
    Llama-4 configs keep it under text_config."""
    tc = cfg.get("text_config")
    if isinstance(tc, dict) and "num_hidden_layers" not in cfg:
        return tc
    return cfg


def cfg_int(c, key, lo, hi, where="config"):
    v = c.get(key)
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise ConvertError("%s: field '%s' is %r, expected an integer %d..%d"
                           % (where, key, v, lo, hi))
    return v


def first_key(c, keys):
    for k in keys:
        if c.get(k) not in (None, 0):
            return k
    return None


def model_shape(cfg):
    """(num_layers, num_experts, top_k, moe_layers) from a transformers
    config.json.  The MoE layers follow each architecture's own rule:
      Llama-4: `moe_layers`, else every `interleave_moe_layer_step`-th layer
               (layers step-1, 2*step-1, ...);
      Nemotron-H style: `layers_block_type` entries "moe";
      DeepSeek-V2/V3, GLM-4.5, Kimi: l >= first_k_dense_replace and
               l % moe_layer_freq == 0;
      Qwen2/3-MoE: l not in mlp_only_layers and (l + 1) % decoder_sparse_step == 0;
      Mixtral, OLMoE, gpt-oss: every layer."""
    c = text_config(cfg)
    n_layers = cfg_int(c, "num_hidden_layers", 1, 65536)
    ek = first_key(c, ("n_routed_experts", "num_local_experts", "num_experts", "moe_num_experts"))
    if not ek:
        raise ConvertError("config: no expert count (n_routed_experts, num_local_experts or "
                           "num_experts)")
    n_exp = cfg_int(c, ek, 1, 65536)
    kk = first_key(c, ("num_experts_per_tok", "experts_per_token", "moe_top_k", "top_k"))
    if not kk:
        raise ConvertError("config: field 'num_experts_per_tok' missing")
    top_k = cfg_int(c, kk, 1, n_exp)
    if c.get("moe_layers") is not None:
        ml = c["moe_layers"]
        if (not isinstance(ml, list) or not ml or
                any(isinstance(x, bool) or not isinstance(x, int) or not 0 <= x < n_layers
                    for x in ml) or sorted(set(ml)) != ml):
            raise ConvertError("config: field 'moe_layers' is %r, expected increasing layer "
                               "indices 0..%d" % (ml, n_layers - 1))
        moe = list(ml)
    elif c.get("interleave_moe_layer_step") is not None:
        step = cfg_int(c, "interleave_moe_layer_step", 1, n_layers)
        moe = list(range(step - 1, n_layers, step))
    elif c.get("layers_block_type") is not None:
        bt = c["layers_block_type"]
        if not isinstance(bt, list) or len(bt) != n_layers:
            raise ConvertError("config: field 'layers_block_type' is not a list of %d layer "
                               "types" % n_layers)
        moe = [i for i, b in enumerate(bt) if b == "moe"]
    else:
        first_dense = int(c.get("first_k_dense_replace") or 0)
        freq = int(c.get("moe_layer_freq") or 1)
        mlp_only = set(int(x) for x in (c.get("mlp_only_layers") or []))
        step = int(c.get("decoder_sparse_step") or 1)
        moe = [l for l in range(n_layers)
               if l >= first_dense and l % freq == 0 and l not in mlp_only
               and (l + 1) % step == 0]
    if not moe:
        raise ConvertError("config: no MoE layer in this layout (first_k_dense_replace, "
                           "mlp_only_layers, decoder_sparse_step, moe_layers)")
    return n_layers, n_exp, top_k, moe


def base_meta(cfg, source, model):
    n_layers, n_exp, top_k, moe = model_shape(cfg)
    mt = text_config(cfg).get("model_type") or cfg.get("model_type") or ""
    return {"format": "moetrace", "version": 1, "model": model, "source": source,
            "arch": mt, "num_layers": n_layers, "num_experts": n_exp, "top_k": top_k,
            "moe_layers": moe, "id_space": "logical"}


# ---- writers ----------------------------------------------------------------


class TraceWriter:
    """Writes a moetrace v1 token trace of n_rows rows into memory-mapped
    .npy files; add() appends one sequence."""

    def __init__(self, out, n_rows, meta, k_slots, weights=False, logits=False):
        self.final, out = out, new_out_dir(out)
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
        """tokens [T]; experts [T, n_moe, <= K] with -1 = missing, one row
        per token (a token without a route has all -1)."""
        t = len(tokens)
        if self.row + t > self.n:
            raise ConvertError("more rows than counted (%d)" % self.n)
        if experts.shape[0] != t:
            raise ConvertError("sequence %d: %d expert rows for %d tokens"
                               % (seq_id, experts.shape[0], t))
        r = slice(self.row, self.row + t)
        self.index[r, 0] = seq_id
        self.index[r, 1] = np.arange(t) if positions is None else positions
        self.index[r, 2] = tokens
        self.experts[r] = -1
        self.experts[r, :, :experts.shape[2]] = experts
        if self.weights is not None:
            self.weights[r] = 0
            if weights is not None:
                self.weights[r, :, :weights.shape[2]] = weights
        if self.logits is not None:
            self.logits[r] = 0
            if logits is not None:
                self.logits[r] = logits
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
        os.rename(self.out, self.final)


def new_out_dir(out):
    """The directory a trace is written into: OUT.tmp, renamed to OUT when
    complete (main() removes it after a failure)."""
    if os.path.exists(out):
        raise ConvertError("%s exists already (give a new directory)" % out)
    tmp = out.rstrip("/") + ".tmp"
    if os.path.exists(tmp):
        raise ConvertError("%s exists (left by an earlier run? remove it)" % tmp)
    os.makedirs(tmp)
    return tmp


def write_counts_trace(out, meta, runs):
    """A count trace: runs = [(id, tokens, counts [n_moe, E], text)]."""
    final, out = out, new_out_dir(out)
    n_moe, n_exp = len(meta["moe_layers"]), meta["num_experts"]
    arr = np.zeros((len(runs), n_moe, n_exp), "<i8")
    meta = dict(meta, kind="counts", sequences=[])
    for i, (rid, tokens, counts, text) in enumerate(runs):
        arr[i] = counts
        meta["sequences"].append({"id": int(rid), "tokens": int(tokens), "text": text})
    np.save(os.path.join(out, "counts.npy"), arr)
    with open(os.path.join(out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    os.rename(out, final)


# ---- expert id arrays ---------------------------------------------------------


def decode_npy_b64(s, where):
    """base64 of .npy bytes -> array."""
    try:
        raw = base64.b64decode(s, validate=True)
        return np.load(io.BytesIO(raw), allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - any decoding failure is bad input
        raise ConvertError("%s: not base64 of .npy bytes (%s)" % (where, e))


def int_array(v, where):
    """An engine's expert id array: numpy, nested lists or base64 .npy."""
    if isinstance(v, np.ndarray):
        a = v
    elif isinstance(v, str):
        a = decode_npy_b64(v, where)
    elif isinstance(v, list):
        try:
            a = np.asarray(v, dtype=np.int64)
        except (ValueError, OverflowError) as e:
            raise ConvertError("%s: not a rectangular list of integers (%s)" % (where, e))
        if a.size == 0:
            a = a.reshape(0, 0, 0)
    else:
        raise ConvertError("%s: expected an array, nested lists or base64 .npy, got %s"
                           % (where, type(v).__name__))
    if a.dtype.kind not in "iu":
        raise ConvertError("%s: dtype %s, expected integer expert ids" % (where, a.dtype))
    if a.ndim != 3:
        raise ConvertError("%s: %d dimensions (shape %s), expected 3: [tokens, layers, top_k]"
                           % (where, a.ndim, a.shape))
    return a.astype(np.int64)


def load_p2l(path):
    """A physical-to-logical expert map [layers, num_physical]: .npy, .json
    ({"physical_to_logical_map": ...} as --init-expert-location takes, or a
    bare list) or .pt (an SGLang dump or expert-location file)."""
    try:
        if path.endswith(".npy"):
            m = np.load(path, allow_pickle=False)
        elif path.endswith(".json"):
            with open(path) as f:
                o = json.load(f)
            m = np.asarray(o["physical_to_logical_map"] if isinstance(o, dict) else o)
        else:
            o = to_numpy(torch_load(path))
            key = [k for k in ("physical_to_logical_map", "last_physical_to_logical_map")
                   if isinstance(o, dict) and k in o]
            if not key:
                raise ConvertError("%s: no physical_to_logical_map in it" % path)
            m = np.asarray(o[key[0]])
    except (OSError, ValueError, KeyError) as e:
        raise ConvertError("--physical-to-logical %s: %s" % (path, e))
    if m.ndim != 2 or m.dtype.kind not in "iu":
        raise ConvertError("--physical-to-logical %s: shape %s dtype %s, expected integer "
                           "[layers, num_physical_experts]" % (path, m.shape, m.dtype))
    return m.astype(np.int64)


def moe_rows(arr, meta, where, dense_ok, p2l=None):
    """[T, L, K] engine ids -> [T, n_moe, K] logical ids (-1 = missing).

    L is num_hidden_layers (the dense layers are then dropped: they must hold
    only the values in dense_ok, or the config does not match) or the number
    of MoE layers (in moe_layers order).  Physical ids (EPLB, redundant
    experts) are mapped with p2l [L' , P] (L' = num_layers or n_moe); an id
    >= num_experts without a map is refused."""
    n_layers, moe, n_exp = meta["num_layers"], meta["moe_layers"], meta["num_experts"]
    if arr.shape[0] == 0:
        return np.zeros((0, len(moe), arr.shape[2] or meta["top_k"]), np.int64)
    L = arr.shape[1]
    if L == n_layers:
        dense = [l for l in range(n_layers) if l not in set(moe)]
        if dense and arr.shape[0]:
            d = arr[:, dense, :]
            bad = ~np.isin(d, dense_ok)
            if bad.any():
                t, j, q = np.argwhere(bad)[0]
                raise ConvertError("%s: layer %d is dense in the config but holds expert id %d "
                                   "(token row %d): the config does not match the model "
                                   "(moe_layers %s)" % (where, dense[j], d[t, j, q], t, moe))
        out = arr[:, moe, :]
    elif L == len(moe):
        out = arr
    else:
        raise ConvertError("%s: %d layers on axis 1, expected num_hidden_layers (%d) or the "
                           "MoE layers (%d)" % (where, L, n_layers, len(moe)))
    if out.size and out.min() < -1:
        raise ConvertError("%s: expert id %d (expected -1 for missing or 0..%d)"
                           % (where, out.min(), n_exp - 1))
    if p2l is not None:
        if p2l.shape[0] == n_layers:
            pm = p2l[moe]
        elif p2l.shape[0] == len(moe):
            pm = p2l
        else:
            raise ConvertError("%s: the physical-to-logical map has %d layers, expected %d or %d"
                               % (where, p2l.shape[0], n_layers, len(moe)))
        if out.size and out.max() >= pm.shape[1]:
            raise ConvertError("%s: physical expert id %d >= the map's %d physical experts"
                               % (where, out.max(), pm.shape[1]))
        j = np.arange(out.shape[1])[None, :, None]
        mapped = pm[j, np.clip(out, 0, None)]
        out = np.where(out < 0, -1, mapped)
        if out.size and out.max() >= n_exp:
            raise ConvertError("%s: the map gives logical id %d >= num_experts (%d)"
                               % (where, out.max(), n_exp))
    elif out.size and out.max() >= n_exp:
        raise ConvertError("%s: expert id %d >= num_experts (%d): physical ids of redundant "
                           "experts (EPLB)? pass --physical-to-logical MAP"
                           % (where, out.max(), n_exp))
    return out


def check_zero_rows(rows, pos0, meta, cached, where):
    """Rows the engine never computed are all 0 in vLLM releases whose host
    buffer starts zeroed (prefix-cache hits, preempted requests).  With k >= 2
    such a row repeats expert 0 and cannot be real; with k == 1 it is refused
    unless the request says no prompt token came from the prefix cache."""
    if rows.shape[0] == 0:
        return
    zero = (rows == 0).all(axis=(1, 2))
    if not zero.any():
        return
    p = pos0 + int(np.argmax(zero))
    k = meta["top_k"]
    if k >= 2:
        raise ConvertError("%s: position %d has expert 0 in every slot of every MoE layer: the "
                           "engine never computed it (a prefix-cache hit or a preempted "
                           "request; serve with --no-enable-prefix-caching, or use a vLLM that "
                           "fills such rows with -1)" % (where, p))
    if cached is None:
        raise ConvertError("%s: position %d routes to expert 0 in every MoE layer; with top-1 "
                           "that is also what an uncomputed row (prefix-cache hit) looks like: "
                           "record num_cached_tokens (offline: RequestOutput.num_cached_tokens; "
                           "HTTP: usage.prompt_tokens_details.cached_tokens) or serve with "
                           "--no-enable-prefix-caching" % (where, p))
    if cached > 0 and zero[:max(0, cached - pos0)].any():
        raise ConvertError("%s: position %d is all expert 0 and lies in the %d prompt tokens "
                           "read from the prefix cache: the engine did not compute it (serve "
                           "with --no-enable-prefix-caching)" % (where, p, cached))


# ---- requests files ---------------------------------------------------------


def read_requests(path):
    with open(path) as f:
        for i, line in enumerate(f, 1):
            if line.strip():
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ConvertError("%s: line %d: %s" % (path, i, e))
                if not isinstance(obj, dict):
                    raise ConvertError("%s: line %d: not a JSON object" % (path, i))
                yield "%s: line %d" % (path, i), i, obj


def token_list(v, where, field):
    if not isinstance(v, list) or any(isinstance(x, bool) or not isinstance(x, int) or x < 0
                                      for x in v):
        raise ConvertError("%s: field '%s' is not a list of token ids" % (where, field))
    return v


def opt_int(obj, keys, where, default=None):
    """An integer field looked up in obj and its "request" / "sampling_params"."""
    for scope in (obj, obj.get("request") if isinstance(obj.get("request"), dict) else None,
                  obj.get("sampling_params") if isinstance(obj.get("sampling_params"), dict)
                  else None):
        if scope is None:
            continue
        for k in keys:
            if k in scope and scope[k] is not None:
                v = scope[k]
                if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                    raise ConvertError("%s: field '%s' is %r, expected an integer >= 0"
                                       % (where, k, v))
                return v
    return default


def convert_requests(path, out, meta, sequences):
    """sequences(where, line, req, meta, decode) yields one dict per sequence
    (tokens, prompt_len, and with decode=True: rows [n, n_moe, K], row_pos,
    text).  Two passes: count the tokens, then write them."""
    n = 0
    for where, line, req in read_requests(path):
        for s in sequences(where, line, req, meta, False):
            n += len(s["tokens"])
    w = TraceWriter(out, n, meta, meta["top_k"])
    seq_id = 0
    for where, line, req in read_requests(path):
        for s in sequences(where, line, req, meta, True):
            t = len(s["tokens"])
            ex = np.full((t, len(meta["moe_layers"]), meta["top_k"]), -1, np.int16)
            rows, p0 = s["rows"], s["row_pos"]
            if rows.shape[2] != meta["top_k"]:
                raise ConvertError("%s: %d expert slots per layer, expected top_k = %d (config)"
                                   % (s["where"], rows.shape[2], meta["top_k"]))
            if p0 + rows.shape[0] > t:
                raise ConvertError("%s: %d routed rows from position %d for %d tokens"
                                   % (s["where"], rows.shape[0], p0, t))
            ex[p0:p0 + rows.shape[0]] = rows
            w.add(seq_id, np.asarray(s["tokens"], np.int64), s["prompt_len"], ex,
                  text=s.get("text"))
            seq_id += 1
    w.close()
    return n


# ---- vLLM -------------------------------------------------------------------


def vllm_rows(prompt, output, routed, prompt_routed, has_prompt_key, start, cached, meta,
              where, p2l):
    """Place vLLM's arrays on positions.  Returns (rows, first position).

    vLLM routes position p when it runs token p; the last generated token
    never runs, so a full array has len(prompt) - start + len(output) - 1
    rows (len(output) when speculative decoding computed the last one).
    Releases that split the arrays give the prompt's rows in
    prompt_routed_experts ([start, len(prompt)) ) and the generated ones in
    routed_experts; older ones give everything in routed_experts."""
    n_p, n_o = len(prompt), len(output)
    if not 0 <= start <= n_p:
        raise ConvertError("%s: routed_experts_prompt_start %d outside 0..%d (prompt tokens)"
                           % (where, start, n_p))
    gen_ok = {max(n_o - 1, 0), n_o}
    if prompt_routed is not None:
        pr = moe_rows(int_array(prompt_routed, where + ": prompt_routed_experts"), meta,
                      where + ": prompt_routed_experts", [0, -1], p2l)
        if pr.shape[0] != n_p - start:
            raise ConvertError("%s: prompt_routed_experts has %d rows, expected the %d prompt "
                               "tokens from routed_experts_prompt_start %d"
                               % (where, pr.shape[0], n_p - start, start))
        g = (moe_rows(int_array(routed, where + ": routed_experts"), meta,
                      where + ": routed_experts", [0, -1], p2l)
             if routed is not None else np.zeros((0,) + pr.shape[1:], np.int64))
        if g.shape[0] == 0:
            g = np.zeros((0,) + pr.shape[1:], np.int64)
        if g.shape[0] not in gen_ok:
            raise ConvertError("%s: routed_experts has %d rows for %d generated tokens "
                               "(expected %s) next to prompt_routed_experts"
                               % (where, g.shape[0], n_o, sorted(gen_ok)))
        rows = np.concatenate([pr, g])
        p0 = start
    else:
        if routed is None:
            raise ConvertError("%s: no routed_experts (serve with --enable-return-routed-"
                               "experts / LLM(enable_return_routed_experts=True))" % where)
        rows = moe_rows(int_array(routed, where + ": routed_experts"), meta,
                        where + ": routed_experts", [0, -1], p2l)
        full = {n_p - start + x for x in gen_ok}
        n = rows.shape[0]
        if n in full and n in gen_ok and n_p - start > 0:
            raise ConvertError("%s: routed_experts has %d rows: the whole sequence from "
                               "position %d or only the %d generated tokens (prompt_routed_"
                               "experts %s) - cannot tell; keep prompt_routed_experts as the "
                               "engine returns it" % (where, n, start, n_o,
                                                      "null" if has_prompt_key else "absent"))
        if n in full:
            p0 = start
        elif n in gen_ok:
            p0 = n_p            # the prompt's routes were not returned
        else:
            raise ConvertError("%s: routed_experts has %d rows for %d prompt + %d generated "
                               "tokens (expected %s for the whole sequence from position %d%s)"
                               % (where, n, n_p, n_o, sorted(full), start,
                                  ", or %s for the generated tokens" % sorted(gen_ok)
                                  if has_prompt_key else ""))
    if cached is not None and not isinstance(cached, int):
        cached = None
    check_zero_rows(rows, p0, meta, cached, where)
    return rows.astype(np.int16), p0


def vllm_sequences(where, line, req, meta, decode, p2l=None):
    start = opt_int(req, ("routed_experts_prompt_start",), where, 0)
    if "choices" in req:                                   # an HTTP response
        prompt = req.get("prompt_token_ids")
        if prompt is None:
            raise ConvertError("%s: prompt_token_ids is null: send \"return_token_ids\": true "
                               "with the request" % where)
        prompt = token_list(prompt, where, "prompt_token_ids")
        usage = req.get("usage") if isinstance(req.get("usage"), dict) else {}
        det = usage.get("prompt_tokens_details") if isinstance(usage.get("prompt_tokens_details"),
                                                               dict) else {}
        cached = det.get("cached_tokens", req.get("num_cached_tokens"))
        if not isinstance(req["choices"], list) or not req["choices"]:
            raise ConvertError("%s: field 'choices' is empty" % where)
        for ci, ch in enumerate(req["choices"]):
            w = "%s: choices[%d]" % (where, ci)
            if not isinstance(ch, dict):
                raise ConvertError("%s: not an object" % w)
            out = ch.get("token_ids")
            if out is None:
                raise ConvertError("%s: token_ids is null: send \"return_token_ids\": true" % w)
            out = token_list(out, w, "token_ids")
            s = {"where": w, "tokens": prompt + out, "prompt_len": len(prompt),
                 "text": req.get("prompt") if isinstance(req.get("prompt"), str) else None}
            if decode:
                s["rows"], s["row_pos"] = vllm_rows(
                    prompt, out, ch.get("routed_experts"), req.get("prompt_routed_experts"),
                    "prompt_routed_experts" in req, start, cached, meta, w, p2l)
            yield s
        return
    prompt = token_list(req.get("prompt_token_ids"), where, "prompt_token_ids")
    key = "output_token_ids" if "output_token_ids" in req else "token_ids"
    out = token_list(req.get(key), where, key)
    s = {"where": where, "tokens": prompt + out, "prompt_len": len(prompt),
         "text": req.get("prompt") if isinstance(req.get("prompt"), str) else None}
    if decode:
        s["rows"], s["row_pos"] = vllm_rows(
            prompt, out, req.get("routed_experts"), req.get("prompt_routed_experts"),
            "prompt_routed_experts" in req, start, req.get("num_cached_tokens"), meta, where,
            p2l)
    yield s


# ---- SGLang /generate -------------------------------------------------------

WIRE_DTYPES = {"int32": "<i4", "uint16": "<u2", "uint8": "u1"}


def sglang_rows(raw, n_rows, meta, declared, where):
    """meta_info["routed_experts"] bytes -> [n_rows, L, top_k] with the dtype
    the response advertises (routed_experts_dtype), or the one the bytes
    allow: len = n_rows x L x top_k x itemsize with L = num_hidden_layers or
    the MoE layers.  Two readings fitting the size are refused."""
    k = meta["top_k"]
    if n_rows == 0:
        if raw:
            raise ConvertError("%s: %d bytes of routed_experts for no routed position"
                               % (where, len(raw)))
        return np.zeros((0, meta["num_layers"], k), np.int64)
    layer_counts = sorted({meta["num_layers"], len(meta["moe_layers"])})
    dtypes = [declared] if declared else list(WIRE_DTYPES)
    fits = [(L, d) for d in dtypes for L in layer_counts
            if n_rows * L * k * np.dtype(WIRE_DTYPES[d]).itemsize == len(raw)]
    if not fits:
        raise ConvertError("%s: %d bytes of routed_experts do not hold %d rows x %s layers x "
                           "top_k %d of %s" % (where, len(raw), n_rows,
                                               " or ".join(map(str, layer_counts)), k,
                                               declared or "int32, uint16 or uint8"))
    if len(fits) > 1:
        raise ConvertError("%s: %d bytes of routed_experts read as %s: the response has no "
                           "routed_experts_dtype; pass --routed-experts-dtype (the server's "
                           "SGLANG_ROUTED_EXPERTS_DTYPE, default int32)"
                           % (where, len(raw), " or as ".join("%d layers of %s" % f
                                                              for f in fits)))
    L, d = fits[0]
    return np.frombuffer(raw, WIRE_DTYPES[d]).astype(np.int64).reshape(n_rows, L, k)


def sglang_sequences(where, line, req, meta, decode, p2l=None, dtype=None):
    mi = req.get("meta_info") if isinstance(req.get("meta_info"), dict) else {}
    r = req.get("request") if isinstance(req.get("request"), dict) else {}
    prompt = req.get("input_ids", r.get("input_ids", req.get("prompt_token_ids")))
    if prompt is None:
        raise ConvertError("%s: no input_ids: add the request's token ids (the /generate "
                           "response does not repeat them)" % where)
    prompt = token_list(prompt, where, "input_ids")
    out = token_list(req.get("output_ids"), where, "output_ids")
    for key, n in (("prompt_tokens", len(prompt)), ("completion_tokens", len(out))):
        if isinstance(mi.get(key), int) and mi[key] != n:
            raise ConvertError("%s: meta_info.%s is %d but %d ids are given"
                               % (where, key, mi[key], n))
    text = req.get("prompt", r.get("text"))
    s = {"where": where, "tokens": prompt + out, "prompt_len": len(prompt),
         "text": text if isinstance(text, str) else None}
    if decode:
        v = mi.get("routed_experts")
        if not isinstance(v, str):
            raise ConvertError("%s: no meta_info.routed_experts (launch with --enable-return-"
                               "routed-experts and send \"return_routed_experts\": true)" % where)
        start = opt_int(req, ("routed_experts_start_len",), where,
                        opt_int(mi, ("routed_experts_start_len",), where, 0))
        if not 0 <= start <= len(prompt):
            raise ConvertError("%s: routed_experts_start_len %d outside 0..%d (prompt tokens)"
                               % (where, start, len(prompt)))
        declared = mi.get("routed_experts_dtype") or dtype
        if declared is not None and declared not in WIRE_DTYPES:
            raise ConvertError("%s: routed_experts_dtype %r, expected int32, uint16 or uint8"
                               % (where, declared))
        try:
            raw = base64.b64decode(v, validate=True)
        except Exception as e:  # noqa: BLE001
            raise ConvertError("%s: meta_info.routed_experts is not base64 (%s)" % (where, e))
        n_rows = len(prompt) + len(out) - 1 - start
        arr = sglang_rows(raw, max(n_rows, 0), meta, declared, where)
        s["rows"] = moe_rows(arr, meta, where, [0, -1], p2l).astype(np.int16)
        s["row_pos"] = start
    yield s


# ---- SGLang expert distribution recorder ------------------------------------

# ForwardMode values of current SGLang (srt/model_executor/forward_batch_info.py)
FM_EXTEND, FM_DECODE, FM_MIXED, FM_IDLE = 1, 2, 3, 4


def torch_load(path):
    try:
        import torch
    except ImportError:
        raise ConvertError("%s: reading a torch.save file needs torch (Debian: apt-get install "
                           "python3-torch)" % path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - a damaged or foreign file
        raise ConvertError("%s: not a readable torch.save file of tensors, lists and dicts "
                           "(%s)" % (path, e))


def to_numpy(obj):
    """Tensors inside dicts/lists -> numpy arrays."""
    if hasattr(obj, "detach"):
        return obj.detach().cpu().numpy()
    if isinstance(obj, dict):
        return {k: to_numpy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_numpy(v) for v in obj]
    return obj


def load_dump(path):
    if path.endswith(".json"):
        try:
            with open(path) as f:
                return json.load(f)
        except (OSError, ValueError) as e:
            raise ConvertError("%s: %s" % (path, e))
    return to_numpy(torch_load(path))


def dump_kind(obj, path):
    if isinstance(obj, dict) and "logical_count" in obj:
        return "stat"
    if isinstance(obj, dict) and isinstance(obj.get("records"), list):
        keys = set()
        for r in obj["records"]:
            if not isinstance(r, dict):
                raise ConvertError("%s: a record is not a dict" % path)
            keys |= set(r)
        if "topk_ids_of_layer" in keys:
            return "per_token"
        if "global_physical_count" in keys:
            return "per_pass"
        if not obj["records"]:
            return "empty"
    raise ConvertError("%s: not an SGLang expert distribution dump (expected 'records' of "
                       "per_token / per_pass mode, or 'logical_count' of stat mode)" % path)


def check_static_map(p2l, n_exp, static, what):
    """The recorder saves the map it had at the end ("last"): with EPLB
    rebalancing during the recording, earlier records used another one."""
    trivial = (p2l == np.arange(p2l.shape[1])[None, :] % n_exp).all()
    if not trivial and not static:
        raise ConvertError("%s: last_physical_to_logical_map is not the trivial one (EPLB or "
                           "--init-expert-location): SGLang saves the map of the end of the "
                           "recording; if it never changed while recording (no --enable-eplb "
                           "rebalancing), pass --static-expert-location" % what)


def rank_classes(files, same):
    """Group rank files whose records are identical (ranks that saw the same
    tokens: tensor parallelism, or DP attention gathering tokens for the MoE):
    one representative per class."""
    classes = []
    for f in files:
        for c in classes:
            if same(c[0]["records"], f["records"]):
                c.append(f)
                break
        else:
            classes.append([f])
    return classes


def same_arrays(a, b):
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if set(x) != set(y):
            return False
        for k in x:
            u, v = x[k], y[k]
            if k == "rank":
                continue
            if isinstance(u, np.ndarray) or isinstance(v, np.ndarray):
                if not (np.shape(u) == np.shape(v) and np.array_equal(u, v)):
                    return False
            elif u != v:
                return False
    return True


def open_dumps(paths, meta, static):
    """Read the rank files of one recording: [{path, rank, records}], kind,
    and the physical-to-logical map."""
    files, kind, p2l = [], None, None
    for p in paths:
        obj = load_dump(p)
        k = dump_kind(obj, p)
        if k == "stat":
            files.append({"path": p, "obj": obj})
        elif k != "empty":
            ranks = {int(r.get("rank", -1)) for r in obj["records"]}
            if len(ranks) != 1:
                raise ConvertError("%s: records of ranks %s in one file (expected one rank per "
                                   "file)" % (p, sorted(ranks)))
            m = obj.get("last_physical_to_logical_map")
            if m is None:
                raise ConvertError("%s: no last_physical_to_logical_map" % p)
            m = np.asarray(m).astype(np.int64)
            if p2l is None:
                p2l = m
            elif m.shape != p2l.shape or not (m == p2l).all():
                raise ConvertError("%s: another physical_to_logical_map than %s: not one "
                                   "recording" % (p, paths[0]))
            files.append({"path": p, "rank": ranks.pop(), "records": obj["records"]})
        if k != "empty":
            if kind is not None and k != kind:
                raise ConvertError("%s: a %s dump among %s dumps" % (p, k, kind))
            kind = k
    if kind is None:
        raise ConvertError("%s: no records (was recording started before the requests and "
                           "stopped before the dump?)" % ", ".join(paths))
    if kind != "stat":
        seen = {}
        for f in files:
            if f["rank"] in seen:
                raise ConvertError("%s and %s are both rank %d: give the files of one "
                                   "recording" % (seen[f["rank"]], f["path"], f["rank"]))
            seen[f["rank"]] = f["path"]
        for f in files:
            for r in f["records"]:
                if r.get("gatherer_key", "primary") != "primary":
                    raise ConvertError("%s: gatherer_key %r (two-batch overlap): not supported"
                                       % (f["path"], r.get("gatherer_key")))
        if p2l.shape[0] not in (meta["num_layers"], len(meta["moe_layers"])):
            raise ConvertError("%s: the map has %d layers, expected %d or %d"
                               % (paths[0], p2l.shape[0], meta["num_layers"],
                                  len(meta["moe_layers"])))
        check_static_map(p2l, meta["num_experts"], static, paths[0])
    return files, kind, p2l


def dump_topk(rec, meta, p2l, where):
    """topk_ids_of_layer [L, T, 8] of a record -> [T, n_moe, top_k] logical."""
    a = np.asarray(rec["topk_ids_of_layer"])
    if a.ndim != 3:
        raise ConvertError("%s: topk_ids_of_layer of shape %s, expected [layers, tokens, slots]"
                           % (where, a.shape))
    a = a.astype(np.int64).transpose(1, 0, 2)
    k = meta["top_k"]
    if a.shape[2] < k:
        raise ConvertError("%s: %d slots per route, top_k is %d" % (where, a.shape[2], k))
    rows = moe_rows(a, meta, where, [-1], p2l)
    extra = rows[:, :, k:]
    if (extra != -1).any():
        raise ConvertError("%s: expert ids beyond top_k (%d) slots: another top-k, or fused "
                           "shared experts (launch with --disable-shared-experts-fusion)"
                           % (where, k))
    return rows[:, :, :k]


def rebuild_rank(records, meta, p2l, where, no_prefix_cache):
    """Sequences of one rank's per_token records.

    Each record is one forward pass: input_ids, positions, extend_seq_lens
    (per request, extend passes) or None (decode passes: one token per
    request).  The dump has no request ids, so a token is placed only where
    its position leaves one choice:
      - an extend segment at position 0 opens a sequence (prompt tokens);
      - an extend segment at p > 0 is a chunked-prefill continuation or a
        request whose first p tokens came from the prefix cache: refused
        unless --no-prefix-cache says the server had none, then it continues
        the one sequence still in prefill that ends at p - 1;
      - a decode token at p continues the one open sequence ending at p - 1
        (a decoding sequence missing from a decode pass has finished).
    Two candidates, or none, are refused."""
    seqs = []
    last_id = None
    for ri, rec in enumerate(records):
        w = "%s: record %d (forward pass %s)" % (where, ri, rec.get("forward_pass_id"))
        fid = rec.get("forward_pass_id")
        if last_id is not None and fid is not None and fid <= last_id:
            raise ConvertError("%s: forward_pass_id not increasing" % w)
        last_id = fid
        for key in ("topk_ids_of_layer", "input_ids", "positions"):
            if key not in rec:
                raise ConvertError("%s: key '%s' missing" % (w, key))
        ids = np.asarray(rec["input_ids"], dtype=np.int64).reshape(-1)
        pos = np.asarray(rec["positions"], dtype=np.int64).reshape(-1)
        if len(ids) == 0:
            continue                                # an idle pass (DP attention)
        topk = dump_topk(rec, meta, p2l, w)
        if len(pos) != len(ids) or topk.shape[0] != len(ids):
            raise ConvertError("%s: %d input_ids, %d positions, %d topk rows"
                               % (w, len(ids), len(pos), topk.shape[0]))
        mode = rec.get("forward_mode")
        lens = rec.get("extend_seq_lens")
        if lens is None:
            if mode not in (FM_DECODE, None):
                raise ConvertError("%s: forward mode %s without extend_seq_lens: speculative "
                                   "decoding (draft tokens that were rejected are in the dump); "
                                   "record without --speculative-algorithm" % (w, mode))
            segs, decode = [(i, 1) for i in range(len(ids))], True
        else:
            if mode == FM_MIXED:
                raise ConvertError("%s: forward mode MIXED (--enable-mixed-chunk) puts decode "
                                   "tokens into prefill passes: prompt and generated tokens "
                                   "cannot be told apart; record without --enable-mixed-chunk"
                                   % w)
            if mode not in (FM_EXTEND, None):
                raise ConvertError("%s: forward mode %s is not a prefill or decode pass "
                                   "(speculative decoding?): record without it" % (w, mode))
            lens = [int(x) for x in np.asarray(lens).reshape(-1)]
            if sum(lens) != len(ids) or min(lens) < 0:
                raise ConvertError("%s: extend_seq_lens %s do not add up to the %d tokens"
                                   % (w, lens, len(ids)))
            segs, decode, s0 = [], False, 0
            for n in lens:
                segs.append((s0, n))
                s0 += n
        used = set()
        for s0, n in segs:
            if n == 0:
                continue
            p0 = int(pos[s0])
            if not (pos[s0:s0 + n] == np.arange(p0, p0 + n)).all():
                raise ConvertError("%s: positions of a request's tokens are not consecutive "
                                   "from %d" % (w, p0))
            if not decode and p0 == 0:
                seq = {"tokens": [], "pos": [], "rows": [], "prompt": 0, "state": "prefill"}
                seqs.append(seq)
            else:
                if not decode and not no_prefix_cache:
                    raise ConvertError("%s: a prefill segment starts at position %d: a chunked-"
                                       "prefill continuation or a request whose first %d tokens "
                                       "came from the prefix cache - the dump cannot tell. If "
                                       "the server ran with --disable-radix-cache, pass --no-"
                                       "prefix-cache; otherwise use the per-request path "
                                       "(return_routed_experts)" % (w, p0, p0))
                cands = [q for q in seqs if q["state"] != "closed" and id(q) not in used and
                         q["pos"][-1] == p0 - 1 and (decode or q["state"] == "prefill")]
                if not cands:
                    if decode:
                        raise ConvertError("%s: a decode token at position %d continues no "
                                           "sequence of the dump (was recording started after "
                                           "the request?)" % (w, p0))
                    raise ConvertError("%s: a prefill segment at position %d continues no "
                                       "sequence in prefill: its first %d tokens came from the "
                                       "prefix cache after all (--no-prefix-cache is wrong); "
                                       "use return_routed_experts" % (w, p0, p0))
                if len(cands) > 1:
                    raise ConvertError("%s: %d sequences end at position %d, so the %s token at "
                                       "%d could belong to any (the dump has no request ids): "
                                       "use the per-request path (return_routed_experts)"
                                       % (w, len(cands), p0 - 1, "decode" if decode
                                          else "prefill", p0))
                seq = cands[0]
            used.add(id(seq))
            seq["tokens"].extend(ids[s0:s0 + n].tolist())
            seq["pos"].extend(range(p0, p0 + n))
            seq["rows"].append(topk[s0:s0 + n])
            if decode:
                seq["state"] = "decode"
            else:
                seq["prompt"] += n
        if decode:
            for q in seqs:
                if q["state"] == "decode" and id(q) not in used:
                    q["state"] = "closed"
    # a retracted request is prefilled again with its generated tokens
    earlier = {}
    for q in seqs:
        key = tuple(q["tokens"][:2])
        for r in earlier.get(key, ()):
            n = len(r["tokens"])
            if n > r["prompt"] and q["prompt"] >= n and q["tokens"][:n] == r["tokens"]:
                raise ConvertError("%s: a prefill repeats an earlier sequence with its %d "
                                   "generated tokens: a retracted request (memory pressure) "
                                   "was run again; record with fewer concurrent requests or "
                                   "use return_routed_experts" % (where, n - r["prompt"]))
        earlier.setdefault(key, []).append(q)
    return seqs


def per_token_trace(files, meta, p2l, out, no_prefix_cache):
    classes = rank_classes(files, same_arrays)
    reps = [c[0] for c in classes]
    if len(reps) > 1:
        # DP attention without DeepEP: every rank's recorder keeps the first
        # rows of the gathered batch, i.e. rank 0's routes under its own tokens
        by_pass = [{r.get("forward_pass_id"): r for r in f["records"]} for f in reps]
        for i in range(1, len(reps)):
            for fid, r in by_pass[i].items():
                r0 = by_pass[0].get(fid)
                if r0 is None:
                    continue
                a = np.asarray(r["topk_ids_of_layer"])
                b = np.asarray(r0["topk_ids_of_layer"])
                m = min(a.shape[1], b.shape[1])
                if (m and not np.array_equal(np.asarray(r["input_ids"]), np.asarray(r0["input_ids"]))
                        and (a[:, :m] != -1).any() and np.array_equal(a[:, :m], b[:, :m])):
                    raise ConvertError("%s: pass %s repeats rank %d's expert ids under other "
                                       "tokens: with DP attention and no DeepEP the per-token "
                                       "recorder stores the gathered batch's first rows; use "
                                       "return_routed_experts" % (reps[i]["path"], fid,
                                                                  reps[0]["rank"]))
    seqs = []
    for f in reps:
        seqs += rebuild_rank(f["records"], meta, p2l, f["path"], no_prefix_cache)
    n = sum(len(s["tokens"]) for s in seqs)
    w = TraceWriter(out, n, meta, meta["top_k"])
    for i, s in enumerate(seqs):
        w.add(i, np.asarray(s["tokens"], np.int64), s["prompt"],
              np.concatenate(s["rows"]).astype(np.int16), positions=np.asarray(s["pos"]))
    w.close()
    return n, len(classes), len(files)


def layer_tokens(logical, meta, what):
    """Tokens of a count matrix [num_layers or n_moe, E]: each token adds
    top_k counts to every MoE layer; dense layers hold none."""
    n_layers, moe, k = meta["num_layers"], meta["moe_layers"], meta["top_k"]
    if logical.shape[0] == n_layers:
        dense = [l for l in range(n_layers) if l not in set(moe)]
        if dense and logical[dense].any():
            l = dense[int(np.argmax(logical[dense].sum(axis=1) > 0))]
            raise ConvertError("%s: layer %d is dense in the config but has counts" % (what, l))
        logical = logical[moe]
    elif logical.shape[0] != len(moe):
        raise ConvertError("%s: %d layers, expected %d or %d" % (what, logical.shape[0],
                                                                 n_layers, len(moe)))
    if logical.min() < 0:
        raise ConvertError("%s: a negative count" % what)
    sums = logical.sum(axis=1)
    if (sums != sums[0]).any():
        j = int(np.argmax(sums != sums[0]))
        raise ConvertError("%s: MoE layer %d counts %d expert choices, layer %d counts %d: every "
                           "token passes every MoE layer, so these cannot be one set of tokens"
                           % (what, moe[0], sums[0], moe[j], sums[j]))
    if sums[0] % k:
        raise ConvertError("%s: %d expert choices per layer is not a multiple of top_k (%d)"
                           % (what, sums[0], k))
    return logical, int(sums[0] // k)


def per_pass_counts(files, meta, p2l):
    classes = rank_classes(files, same_arrays)
    n_exp = meta["num_experts"]
    total = None
    for c in classes:
        f = c[0]
        phys = None
        for ri, r in enumerate(f["records"]):
            g = np.asarray(r["global_physical_count"]).astype(np.int64)
            if g.ndim != 2 or g.shape != (p2l.shape[0], p2l.shape[1]):
                raise ConvertError("%s: record %d: global_physical_count of shape %s, expected "
                                   "%s (the map's layers x physical experts)"
                                   % (f["path"], ri, g.shape, p2l.shape))
            phys = g if phys is None else phys + g
        logical = np.zeros((p2l.shape[0], n_exp), np.int64)
        for l in range(p2l.shape[0]):
            np.add.at(logical[l], p2l[l], phys[l])
        total = logical if total is None else total + logical
    return total, len(classes)


def sglang_dump(paths, meta, out, no_prefix_cache=False, static=False, ranks_per_token=None):
    """Returns a summary line."""
    files, kind, p2l = open_dumps(paths, meta, static)
    if kind == "per_token":
        n, n_cls, n_files = per_token_trace(files, meta, p2l, out, no_prefix_cache)
        return ("per_token dump of %d rank file%s (%d distinct): %d tokens"
                % (n_files, "" if n_files == 1 else "s", n_cls, n))
    if kind == "per_pass":
        logical, n_cls = per_pass_counts(files, meta, p2l)
        what = "per_pass dump %s" % paths[0]
        counts, tokens = layer_tokens(logical, meta, what)
        write_counts_trace(out, meta, [(0, tokens, counts, "SGLang per_pass dump: " +
                                        ", ".join(os.path.basename(p) for p in paths))])
        return ("per_pass dump of %d rank file%s (%d distinct: ranks with identical records "
                "counted once): counts of %d tokens" % (len(files), "" if len(files) == 1
                                                        else "s", n_cls, tokens))
    # stat mode / EPLB load record: already summed over ranks
    if ranks_per_token is None:
        raise ConvertError("%s: stat dumps and EPLB load records are summed over all ranks, "
                           "and with plain tensor parallelism (or DP attention without DeepEP) "
                           "every rank counted every token: pass --ranks-per-token N (the TP "
                           "size then; 1 with DeepEP, where each rank counts its own tokens)"
                           % paths[0])
    runs = []
    for i, f in enumerate(files):
        lc = np.asarray(f["obj"]["logical_count"])
        if lc.dtype.kind not in "iu" or lc.ndim not in (2, 3):
            raise ConvertError("%s: logical_count of dtype %s shape %s, expected integer "
                               "[steps, layers, experts] or [layers, experts]"
                               % (f["path"], lc.dtype, lc.shape))
        lc = lc.astype(np.int64)
        if lc.ndim == 3:
            lc = lc.sum(axis=0)
        if lc.shape[1] != meta["num_experts"]:
            raise ConvertError("%s: logical_count has %d experts, the config %d"
                               % (f["path"], lc.shape[1], meta["num_experts"]))
        if (lc % ranks_per_token).any():
            raise ConvertError("%s: counts not divisible by --ranks-per-token %d: the ranks did "
                               "not all count the same tokens" % (f["path"], ranks_per_token))
        counts, tokens = layer_tokens(lc // ranks_per_token, meta, f["path"])
        runs.append((i, tokens, counts, "SGLang stat dump: " + os.path.basename(f["path"])))
    write_counts_trace(out, meta, runs)
    return "stat dump%s: counts of %s tokens" % ("" if len(runs) == 1 else "s",
                                                  " + ".join(str(r[1]) for r in runs))


# ---- Hugging Face transformers ------------------------------------------------

# The router rule of each model type (transformers' modeling code):
#   softmax       softmax over all experts, top-k, renormalised iff
#                 norm_topk_prob (Qwen2/3-MoE, Qwen3-Next, OLMoE, FlexOlmo)
#   softmax_topk  top-k of the logits, softmax over those k (Mixtral, gpt-oss)
#   sigmoid       sigmoid scores; selection by score + e_score_correction_bias
#                 within the topk_group best of n_group groups (a group's
#                 score: its two best); weights the scores (no bias),
#                 renormalised iff norm_topk_prob, times routed_scaling_factor
#                 (DeepSeek-V3, Kimi-K2, GLM-4.5)
#   sigmoid_topk  top-k of the logits, weight sigmoid(logit) (Llama-4)
GATING = {
    "mixtral": "softmax_topk", "gpt_oss": "softmax_topk",
    "qwen2_moe": "softmax", "qwen3_moe": "softmax", "qwen3_next": "softmax",
    "qwen3_vl_moe": "softmax", "qwen3_vl_moe_text": "softmax", "qwen3_5_moe": "softmax",
    "qwen3_5_moe_text": "softmax", "olmoe": "softmax", "flex_olmo": "softmax",
    "deepseek_v3": "sigmoid", "kimi_k2": "sigmoid", "glm4_moe": "sigmoid",
    "llama4": "sigmoid_topk", "llama4_text": "sigmoid_topk",
}


def hf_gating(cfg):
    c = text_config(cfg)
    mt = c.get("model_type") or cfg.get("model_type")
    kind = GATING.get(mt)
    if kind is None:
        raise ConvertError("config: model_type %r: its router rule is not known here; save the "
                           "router's top-k ids and weights (topk_ids_<j>, topk_weights_<j>) "
                           "instead of logits" % mt)
    g = {"kind": kind, "model_type": mt, "norm": False, "scale": 1.0, "n_group": 1,
         "topk_group": 1}
    sf = c.get("scoring_func")
    if sf is not None and sf != ("sigmoid" if kind.startswith("sigmoid") else "softmax"):
        raise ConvertError("config: scoring_func %r does not match %s's %s router"
                           % (sf, mt, kind))
    if kind in ("softmax", "sigmoid"):
        if not isinstance(c.get("norm_topk_prob"), bool):
            raise ConvertError("config: field 'norm_topk_prob' missing or not true/false (the "
                               "%s router renormalises the top-k weights iff it is true)" % mt)
        g["norm"] = c["norm_topk_prob"]
    if kind == "sigmoid":
        tm = c.get("topk_method")
        if tm is not None and tm != "noaux_tc":
            raise ConvertError("config: topk_method %r: expected noaux_tc (bias-corrected "
                               "selection)" % tm)
        rsf = c.get("routed_scaling_factor", 1.0)
        if isinstance(rsf, bool) or not isinstance(rsf, (int, float)) or not rsf > 0:
            raise ConvertError("config: routed_scaling_factor %r is not a number > 0" % rsf)
        g["scale"] = float(rsf)
        n_exp = model_shape(cfg)[1]
        g["n_group"] = int(c.get("n_group") or 1)
        g["topk_group"] = int(c.get("topk_group") or g["n_group"])
        if (g["n_group"] < 1 or n_exp % g["n_group"] or not 1 <= g["topk_group"] <= g["n_group"]):
            raise ConvertError("config: n_group %d / topk_group %d do not divide %d experts"
                               % (g["n_group"], g["topk_group"], n_exp))
    return g


def topk_desc(x, k):
    """Indices of the k largest per row, largest first (ties: lower index)."""
    return np.argsort(-x, axis=1, kind="stable")[:, :k]


def softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def hf_route(x, g, k, bias=None, probs=False):
    """Router output x [T, E] of one layer (logits, or probabilities when
    probs) -> (experts [T, k], weights [T, k]) as the model routes."""
    x = x.astype(np.float64)
    kind = g["kind"]
    if kind == "softmax":
        p = x if probs else softmax(x)
        idx = topk_desc(p, k)
        w = np.take_along_axis(p, idx, axis=1)
        if g["norm"]:
            w = w / w.sum(axis=1, keepdims=True)
    elif kind == "softmax_topk":
        idx = topk_desc(x, k)
        top = np.take_along_axis(x, idx, axis=1)
        w = top / top.sum(axis=1, keepdims=True) if probs else softmax(top)
    elif kind == "sigmoid":
        s = 1.0 / (1.0 + np.exp(-x))
        sel = s + bias[None, :]
        ng, tg = g["n_group"], g["topk_group"]
        if ng > 1:
            grp = sel.reshape(len(x), ng, -1)
            gscore = np.sort(grp, axis=2)[:, :, -2:].sum(axis=2)
            keep = topk_desc(gscore, tg)
            mask = np.zeros((len(x), ng), bool)
            np.put_along_axis(mask, keep, True, axis=1)
            # transformers fills the experts of dropped groups with 0.0
            sel = np.where(np.repeat(mask, x.shape[1] // ng, axis=1), sel, 0.0)
        idx = topk_desc(sel, k)
        w = np.take_along_axis(s, idx, axis=1)
        if g["norm"]:
            w = w / (w.sum(axis=1, keepdims=True) + 1e-20)
        w = w * g["scale"]
    else:                                                  # sigmoid_topk
        idx = topk_desc(x, k)
        w = 1.0 / (1.0 + np.exp(-np.take_along_axis(x, idx, axis=1)))
    return idx.astype(np.int16), w.astype(np.float32)


def prob_rows(x):
    """Per row: 1 when it is a probability distribution (entries >= 0,
    summing to 1 within float32/bf16 rounding)."""
    return (x >= -1e-6).all(axis=1) & (np.abs(x.sum(axis=1) - 1.0) <= 1e-2)


def npz_layer(npz, name, j):
    for key in ("%s_%d" % (name, j),):
        if key in npz:
            return np.asarray(npz[key])
    if name in npz:
        a = np.asarray(npz[name])
        return a[j]
    return None


def hf_convert(npz, cfg, meta, out, router_output=None, keep_logits=True):
    """npz: input_ids [B, T] (or [T]); attention_mask [B, T] (needed when
    B > 1: padding rows are dropped); prompt_lens [B] (tokens of each
    prompt, default all); per MoE layer j (moe_layers order) either
    router_logits_<j> [B*T, E] (or router_logits [n_moe, B*T, E]) - router
    logits or probabilities - or topk_ids_<j> + topk_weights_<j> [B*T, K]
    (captured from the router); e_score_correction_bias_<j> [E] (or
    e_score_correction_bias [n_moe, E]) for sigmoid routers."""
    ids = np.asarray(npz["input_ids"]) if "input_ids" in npz else None
    if ids is None or ids.dtype.kind not in "iu" or ids.ndim not in (1, 2):
        raise ConvertError("npz: input_ids missing or not integer [batch, tokens]")
    if ids.ndim == 1:
        ids = ids[None, :]
    b, t = ids.shape
    if "attention_mask" in npz:
        mask = np.asarray(npz["attention_mask"])
        if mask.shape != ids.shape or not np.isin(mask, (0, 1)).all():
            raise ConvertError("npz: attention_mask of shape %s (values 0/1) expected, like "
                               "input_ids %s" % (mask.shape, ids.shape))
        mask = mask.astype(bool)
    elif b > 1:
        raise ConvertError("npz: %d sequences but no attention_mask: padding rows cannot be told "
                           "from tokens (save the batch's attention_mask; all ones if unpadded)"
                           % b)
    else:
        mask = np.ones_like(ids, dtype=bool)
    n_real = mask.sum(axis=1)
    if "prompt_lens" in npz:
        plens = np.asarray(npz["prompt_lens"]).reshape(-1)
        if plens.shape != (b,) or (plens < 0).any() or (plens > n_real).any():
            raise ConvertError("npz: prompt_lens %s: expected %d values in 0..tokens of each "
                               "sequence %s" % (plens.tolist(), b, n_real.tolist()))
    else:
        plens = n_real
    n_moe, n_exp, k = len(meta["moe_layers"]), meta["num_experts"], meta["top_k"]
    rows = mask.reshape(-1)
    have_logits = "router_logits" in npz or "router_logits_0" in npz
    have_topk = "topk_ids_0" in npz or "topk_ids" in npz
    if have_logits == have_topk:
        raise ConvertError("npz: give router_logits_<j> (router outputs) or topk_ids_<j> + "
                           "topk_weights_<j> (router decisions), one of the two")
    ex = np.empty((b * t, n_moe, k), np.int16)
    wt = np.empty((b * t, n_moe, k), np.float32)
    lg = None
    if have_topk:
        for j in range(n_moe):
            i_j, w_j = npz_layer(npz, "topk_ids", j), npz_layer(npz, "topk_weights", j)
            if i_j is None or w_j is None:
                raise ConvertError("npz: topk_ids_%d / topk_weights_%d missing (MoE layer %d)"
                                   % (j, j, meta["moe_layers"][j]))
            i_j, w_j = i_j.reshape(-1, i_j.shape[-1]), w_j.reshape(-1, w_j.shape[-1])
            if i_j.shape != (b * t, k) or w_j.shape != (b * t, k) or i_j.dtype.kind not in "iu":
                raise ConvertError("npz: topk_ids_%d %s / topk_weights_%d %s, expected integer "
                                   "and float [%d tokens, top_k %d]"
                                   % (j, i_j.shape, j, w_j.shape, b * t, k))
            if ((i_j < 0) | (i_j >= n_exp)).any():
                raise ConvertError("npz: topk_ids_%d holds ids outside 0..%d" % (j, n_exp - 1))
            ex[:, j], wt[:, j] = i_j, w_j
        kind = "router decisions"
    else:
        g = hf_gating(cfg)
        layers = []
        for j in range(n_moe):
            x = npz_layer(npz, "router_logits", j)
            if x is None:
                raise ConvertError("npz: router_logits_%d missing (MoE layer %d)"
                                   % (j, meta["moe_layers"][j]))
            x = x.reshape(-1, x.shape[-1]) if x.ndim == 3 else x
            if x.shape != (b * t, n_exp) or x.dtype.kind != "f":
                raise ConvertError("npz: router_logits_%d of shape %s dtype %s, expected float "
                                   "[%d = batch x tokens, %d experts]"
                                   % (j, x.shape, x.dtype, b * t, n_exp))
            if not np.isfinite(x[rows]).all():
                raise ConvertError("npz: router_logits_%d holds NaN or infinite values" % j)
            layers.append(x)
        pr = np.concatenate([prob_rows(x[rows]) for x in layers])
        if router_output is None:
            if pr.all():
                router_output = "probs"
            elif not pr.any():
                router_output = "logits"
            else:
                raise ConvertError("npz: %d of %d router rows are probability distributions "
                                   "(>= 0, sum 1) and the others are not: pass --router-output "
                                   "probs|logits" % (pr.sum(), len(pr)))
        elif router_output == "probs" and not pr.all():
            raise ConvertError("npz: --router-output probs, but %d router rows are not "
                               "probability distributions" % (len(pr) - pr.sum()))
        probs = router_output == "probs"
        if probs and g["kind"].startswith("sigmoid"):
            raise ConvertError("npz: %s routers need their logits (the probabilities of a "
                               "sigmoid router do not sum to 1): save the gate's output logits"
                               % g["model_type"])
        bias = None
        if g["kind"] == "sigmoid":
            bias = []
            for j in range(n_moe):
                bj = npz_layer(npz, "e_score_correction_bias", j)
                if bj is None:
                    raise ConvertError("npz: e_score_correction_bias_%d missing: %s selects "
                                       "experts by score + e_score_correction_bias (the gate's "
                                       "buffer, model.layers[%d].mlp.gate.e_score_correction_"
                                       "bias); without it the experts come out wrong"
                                       % (j, g["model_type"], meta["moe_layers"][j]))
                bj = np.asarray(bj, np.float64).reshape(-1)
                if bj.shape != (n_exp,) or not np.isfinite(bj).all():
                    raise ConvertError("npz: e_score_correction_bias_%d: expected %d finite "
                                       "numbers" % (j, n_exp))
                bias.append(bj)
        for j, x in enumerate(layers):
            ex[:, j], wt[:, j] = hf_route(x, g, k, None if bias is None else bias[j], probs)
        if keep_logits and not probs:
            lg = np.stack(layers, axis=1).astype(np.float32)
        kind = "router %s (%s)" % (router_output, g["kind"])
    tw = TraceWriter(out, int(n_real.sum()), meta, k, weights=True, logits=lg is not None)
    for s in range(b):
        r = np.arange(s * t, (s + 1) * t)[mask[s]]
        tw.add(s, ids[s][mask[s]], int(plens[s]), ex[r], wt[r],
               lg[r] if lg is not None else None)
    tw.close()
    return int(n_real.sum()), kind


# ---- command line -----------------------------------------------------------


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="See docs/moetrace.md for each engine's recipe.")
    ap.add_argument("source", choices=["vllm", "sglang", "sglang-dump", "hf"])
    ap.add_argument("input", nargs="+", help="requests .jsonl (vllm, sglang), the dump files of "
                    "one recording, one per rank (sglang-dump), or .npz (hf)")
    ap.add_argument("--config", required=True, help="the model's config.json")
    ap.add_argument("-o", "--out", required=True, help="moetrace directory to create")
    ap.add_argument("--model", help="model name for meta.json (default: config "
                    "_name_or_path or the config's directory)")
    ap.add_argument("--physical-to-logical", metavar="MAP",
                    help="vllm, sglang: EPLB map [layers, physical experts] (.npy, .json, .pt)")
    ap.add_argument("--routed-experts-dtype", choices=sorted(WIRE_DTYPES),
                    help="sglang: SGLANG_ROUTED_EXPERTS_DTYPE of the server, for responses "
                    "without meta_info.routed_experts_dtype whose size fits two readings")
    ap.add_argument("--no-prefix-cache", action="store_true",
                    help="sglang-dump: the server ran with --disable-radix-cache, so a prefill "
                    "at position p > 0 continues a chunked prefill")
    ap.add_argument("--static-expert-location", action="store_true",
                    help="sglang-dump: the physical-to-logical map did not change while "
                    "recording (no EPLB rebalancing)")
    ap.add_argument("--ranks-per-token", type=int, metavar="N",
                    help="sglang-dump stat / EPLB record: how many ranks counted each token")
    ap.add_argument("--router-output", choices=["probs", "logits"],
                    help="hf: what router_logits_<j> hold (default: detected; refused when "
                    "ambiguous)")
    ap.add_argument("--no-logits", action="store_true", help="hf: leave logits.npy out")
    a = ap.parse_args(argv)
    tmp = a.out.rstrip("/") + ".tmp"
    had_tmp = os.path.exists(tmp)
    rc = run(a, ap)
    if rc and not had_tmp and os.path.isdir(tmp):
        import shutil
        shutil.rmtree(tmp)      # our own partial output
    return rc


def run(a, ap):
    if a.source != "sglang-dump" and len(a.input) != 1:
        ap.error("%s takes one input file" % a.source)
    if a.ranks_per_token is not None and a.ranks_per_token < 1:
        ap.error("--ranks-per-token must be >= 1")
    try:
        with open(a.config) as f:
            cfg = json.load(f)
        if not isinstance(cfg, dict):
            raise ConvertError("%s: not a JSON object" % a.config)
        name = a.model or cfg.get("_name_or_path") or os.path.basename(
            os.path.dirname(os.path.abspath(a.config)))
        src = "sglang" if a.source.startswith("sglang") else a.source
        meta = base_meta(cfg, src, name)
        p2l = load_p2l(a.physical_to_logical) if a.physical_to_logical else None
        if a.source == "vllm":
            n = convert_requests(a.input[0], a.out, meta,
                                 lambda *x: vllm_sequences(*x, p2l=p2l))
            what = "%d tokens" % n
        elif a.source == "sglang":
            n = convert_requests(a.input[0], a.out, meta,
                                 lambda *x: sglang_sequences(*x, p2l=p2l,
                                                             dtype=a.routed_experts_dtype))
            what = "%d tokens" % n
        elif a.source == "sglang-dump":
            what = sglang_dump(a.input, meta, a.out, a.no_prefix_cache,
                               a.static_expert_location, a.ranks_per_token)
        else:
            try:
                npz = np.load(a.input[0], allow_pickle=False)
            except (OSError, ValueError) as e:
                raise ConvertError("%s: %s" % (a.input[0], e))
            with npz:
                n, kind = hf_convert(npz, cfg, meta, a.out, a.router_output,
                                     keep_logits=not a.no_logits)
            what = "%d tokens from %s" % (n, kind)
    except ConvertError as e:
        print("moetrace_convert: %s" % e, file=sys.stderr)
        return 1
    except (OSError, ValueError) as e:
        print("moetrace_convert: %s" % e, file=sys.stderr)
        return 1
    print("wrote %s: %s, %d MoE layers of %d" % (a.out, what, len(meta["moe_layers"]),
                                                 meta["num_layers"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
