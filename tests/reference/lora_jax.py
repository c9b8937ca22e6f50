"""LoRA training reference in JAX (CPU, float64): the llama-family forward over dequantized
GGUF weights (llama_ref.LlamaWeights), LoRA on any of q, k, v, o, gate, up, down, the masked
cross-entropy, its gradients by jax.grad, and AdamW with global-norm clipping and a warm-up +
cosine schedule written out from their definitions. The oracle for the engine's training pass
(tests/e2e/test_train_oracle.py) and the peer of bench/train.

LoRA tensors are named as in the adapter file: blk.N.attn_q.weight.lora_a (A [rank, in]) and
.lora_b (B [out, rank]); the adapted projection is W x + alpha / rank * B A x.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from llama_ref import LlamaWeights

STEMS = {"q": "attn_q", "k": "attn_k", "v": "attn_v", "o": "attn_output", "gate": "ffn_gate",
         "up": "ffn_up", "down": "ffn_down"}


def weights_to_jax(w: LlamaWeights, dtype=jnp.float64) -> dict:
    """The frozen weights as a pytree of jnp arrays."""
    layers = []
    for l in w.layers:
        d = {"attn_norm": l.attn_norm, "ffn_norm": l.ffn_norm, "attn_q": l.wq.w, "attn_k": l.wk.w,
             "attn_v": l.wv.w, "attn_output": l.wo.w, "ffn_gate": l.gate.w, "ffn_up": l.up.w,
             "ffn_down": l.down.w}
        for name, b in (("bq", l.bq), ("bk", l.bk), ("bv", l.bv)):
            if b is not None:
                d[name] = b
        layers.append({k: jnp.asarray(v, dtype=dtype) for k, v in d.items()})
    return {"token_embd": jnp.asarray(w.token_embd.w, dtype=dtype),
            "output": jnp.asarray(w.output.w, dtype=dtype),
            "output_norm": jnp.asarray(w.output_norm, dtype=dtype), "layers": layers}


def _rope(x, positions, rope_dims, theta, mode):
    """x [n, heads, head_dim]."""
    half = rope_dims // 2
    inv = theta ** (-2.0 * jnp.arange(half, dtype=x.dtype) / rope_dims)
    ang = positions.astype(x.dtype)[:, None] * inv[None, :]
    cos, sin = jnp.cos(ang)[:, None, :], jnp.sin(ang)[:, None, :]
    if mode == "normal":
        a, b = x[..., 0:rope_dims:2], x[..., 1:rope_dims:2]
        ra, rb = a * cos - b * sin, a * sin + b * cos
        rot = jnp.stack([ra, rb], axis=-1).reshape(x.shape[:-1] + (rope_dims,))
    else:
        a, b = x[..., :half], x[..., half:rope_dims]
        rot = jnp.concatenate([a * cos - b * sin, a * sin + b * cos], axis=-1)
    return jnp.concatenate([rot, x[..., rope_dims:]], axis=-1)


def _rms(x, w, eps):
    return x / jnp.sqrt(jnp.mean(x * x, axis=-1, keepdims=True) + eps) * w


def make_loss(cfg, alpha: float, rank: int):
    """loss_sum(lora, base, tokens, targets, mask) for one sequence: sum over masked rows of
    -log p(target)."""
    scale = alpha / rank
    group = cfg.num_heads // cfg.num_kv_heads
    hd = cfg.head_dim

    def proj(x, base_w, lora, name):
        y = x @ base_w.T
        if name + ".lora_a" in lora:
            y = y + scale * ((x @ lora[name + ".lora_a"].T) @ lora[name + ".lora_b"].T)
        return y

    def loss_sum(lora, base, tokens, targets, mask):
        n = tokens.shape[0]
        pos = jnp.arange(n)
        x = base["token_embd"][tokens]
        causal = pos[None, :] <= pos[:, None]
        for i, L in enumerate(base["layers"]):
            b = f"blk.{i}."
            xn = _rms(x, L["attn_norm"], cfg.rms_eps)
            q = proj(xn, L["attn_q"], lora, b + "attn_q.weight")
            k = proj(xn, L["attn_k"], lora, b + "attn_k.weight")
            v = proj(xn, L["attn_v"], lora, b + "attn_v.weight")
            if "bq" in L:
                q, k, v = q + L["bq"], k + L["bk"], v + L["bv"]
            q = _rope(q.reshape(n, cfg.num_heads, hd), pos, cfg.rope_dims, cfg.rope_theta, cfg.rope_mode)
            k = _rope(k.reshape(n, cfg.num_kv_heads, hd), pos, cfg.rope_dims, cfg.rope_theta, cfg.rope_mode)
            v = v.reshape(n, cfg.num_kv_heads, hd)
            kh, vh = jnp.repeat(k, group, axis=1), jnp.repeat(v, group, axis=1)
            s = jnp.einsum("nhd,thd->hnt", q, kh) / math.sqrt(hd)
            s = jnp.where(causal[None], s, -jnp.inf)
            p = jax.nn.softmax(s, axis=-1)
            att = jnp.einsum("hnt,thd->nhd", p, vh).reshape(n, cfg.num_heads * hd)
            h = x + proj(att, L["attn_output"], lora, b + "attn_output.weight")
            xn2 = _rms(h, L["ffn_norm"], cfg.rms_eps)
            g = proj(xn2, L["ffn_gate"], lora, b + "ffn_gate.weight")
            u = proj(xn2, L["ffn_up"], lora, b + "ffn_up.weight")
            x = h + proj(jax.nn.silu(g) * u, L["ffn_down"], lora, b + "ffn_down.weight")
        logits = _rms(x, base["output_norm"], cfg.rms_eps) @ base["output"].T
        logp = jax.nn.log_softmax(logits, axis=-1)
        picked = jnp.take_along_axis(logp, targets[:, None], axis=-1)[:, 0]
        return -jnp.sum(jnp.where(mask, picked, 0.0))

    return loss_sum


def prepare(sequences):
    """[(tokens, is_target)] -> [(tokens, next-token targets, mask)] as jnp arrays; rows with no
    next token or a non-target next token are masked out."""
    out = []
    for tokens, is_target in sequences:
        t = np.asarray(tokens, dtype=np.int32)
        nxt = np.concatenate([t[1:], [0]])
        mask = np.concatenate([np.asarray(is_target[1:], dtype=bool), [False]])
        out.append((jnp.asarray(t), jnp.asarray(nxt), jnp.asarray(mask)))
    return out


def make_value_and_grad(cfg, sequences, alpha, rank):
    """A jitted fn(lora, base) -> (mean loss over the batch's target tokens, d loss / d lora)."""
    loss_sum = make_loss(cfg, alpha, rank)
    prepared = prepare(sequences)
    num = sum(int(np.sum(np.asarray(m))) for _, _, m in prepared)

    def total(lora, base):
        return sum(loss_sum(lora, base, t, y, m) for t, y, m in prepared) / num

    return jax.jit(jax.value_and_grad(total))


def learning_rate(lr, warmup, total, step, min_ratio=0.0):
    if step < warmup:
        return lr * (step + 1) / warmup
    decay = max(total - warmup, 1)
    progress = min(1.0, (step - warmup) / decay)
    return lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def adamw_steps(value_and_grad, base, lora, steps, lr, warmup=0, clip=1.0, weight_decay=0.0,
                beta1=0.9, beta2=0.999, eps=1e-8):
    """`steps` AdamW steps of value_and_grad (make_value_and_grad) on its batch; returns
    (per-step (loss, grad_norm, lr), final lora)."""
    m = {k: jnp.zeros_like(v) for k, v in lora.items()}
    v2 = {k: jnp.zeros_like(v) for k, v in lora.items()}
    history = []
    for step in range(steps):
        loss, grads = value_and_grad(lora, base)
        norm = math.sqrt(sum(float(jnp.sum(g * g)) for g in grads.values()))
        if clip > 0 and norm > clip:
            grads = {k: g * (clip / (norm + 1e-6)) for k, g in grads.items()}
        rate = learning_rate(lr, warmup, steps, step)
        t = step + 1
        new = {}
        for k in lora:
            m[k] = beta1 * m[k] + (1 - beta1) * grads[k]
            v2[k] = beta2 * v2[k] + (1 - beta2) * grads[k] ** 2
            mh, vh = m[k] / (1 - beta1 ** t), v2[k] / (1 - beta2 ** t)
            new[k] = lora[k] - rate * (mh / (jnp.sqrt(vh) + eps) + weight_decay * lora[k])
        lora = new
        history.append((float(loss), norm, rate))
    return history, lora
