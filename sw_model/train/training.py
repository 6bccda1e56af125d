"""Training the shipped byte-level MoE models (CPU PyTorch, the optional ``[train]`` extra).

``python build.py train`` reproduces ``sw_model/models/*`` from a fixed seed (``--seed``, default 1):
two variants of :data:`TRAINED_CONFIG` trained on the training side of :mod:`sw_model.model.corpus`,
side by side in two processes of one torch thread each (two cores), 240 steps of 16 x 128 bytes:

* ``standard``: top-k routing (k = 4 of 32 experts), softmax router renormalised over the top-k,
  a Switch-style load-balancing loss;
* ``elastic`` (Elastic MoE, arXiv 2509.21892): every step activates a random number of experts
  ``k'`` drawn uniformly from 1..3k (random expert subsets: experts learn to work in combinations of
  any size, and lower-ranked experts see the tokens they are ranked for), plus a router ranking
  loss: the entropy of the router's distribution, so that the ranking is decisive and experts
  beyond a token's best few carry little weight.

The PyTorch model is the golden model's architecture (:class:`sw_model.model.moe.MoEModel`,
Qwen3-MoE: RMSNorm, GQA with rotary positions and per-head q/k RMSNorm, SwiGLU experts) in float32;
the result is written in Hugging Face Qwen3-MoE naming (BF16 safetensors + config.json), which
:func:`sw_model.model.checkpoints.load_checkpoint` reads. Nothing outside this module imports torch.
"""

from dataclasses import dataclass
import json
import logging
import math
import time
from pathlib import Path

import numpy as np

from sw_model.model.moe import MoEConfig

__all__ = ["TRAINED_CONFIG", "TrainConfig", "VARIANTS", "MODELS_DIR", "train", "hf_config",
           "model_dir"]

log = logging.getLogger(__name__)

#: The shipped models' shape: the built-in default's (4 layers, 32 experts, top-4) at hidden 128,
#: expert width 64 and a byte vocabulary, so both variants fit in 20 MB as BF16.
TRAINED_CONFIG = MoEConfig(vocab_size=256, hidden_size=128, num_layers=4, num_heads=4,
                           num_kv_heads=2, head_dim=32, num_experts=32, top_k=4, expert_ffn=64,
                           norm_topk_prob=True, qk_norm="head", rms_eps=1e-6, rope_theta=10000.0,
                           name="elmoe-byte-moe")
VARIANTS = ("standard", "elastic")
MODELS_DIR = Path(__file__).resolve().parent.parent / "models"


def model_dir(variant):
    """Directory of the shipped model ``variant``."""
    if variant not in VARIANTS:
        raise ValueError(f"model variant must be one of {', '.join(VARIANTS)}, not {variant!r}")
    return MODELS_DIR / f"elmoe-byte-{variant}"


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (the defaults made the shipped weights)."""
    steps: int = 240
    batch: int = 16
    seq_len: int = 128
    lr: float = 4e-3
    warmup: int = 20
    weight_decay: float = 0.05
    balance_coef: float = 0.01
    ranking_coef: float = 0.01
    threads: int = 1
    seed: int = 0

    def __post_init__(self):
        for name in ("steps", "batch", "seq_len", "warmup", "threads"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"TrainConfig.{name} must be a positive integer, not {v!r}")
        if not self.lr > 0:
            raise ValueError(f"TrainConfig.lr must be positive, not {self.lr!r}")


def hf_config(config, variant):
    """config.json of a Qwen3-MoE checkpoint with ``config``'s shape."""
    c = config
    return {
        "architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe",
        "_name_or_path": f"elmoe-byte-{variant}",
        "vocab_size": c.vocab_size, "hidden_size": c.hidden_size,
        "num_hidden_layers": c.num_layers, "num_attention_heads": c.num_heads,
        "num_key_value_heads": c.num_kv_heads, "head_dim": c.head_dim,
        "num_experts": c.num_experts, "num_experts_per_tok": c.top_k,
        "moe_intermediate_size": c.expert_ffn, "intermediate_size": c.expert_ffn,
        "norm_topk_prob": c.norm_topk_prob, "decoder_sparse_step": 1, "mlp_only_layers": [],
        "rms_norm_eps": c.rms_eps, "rope_theta": c.rope_theta, "rope_scaling": None,
        "attention_bias": False, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
        "elmoe_training": variant,
    }


def _modules():
    """The PyTorch model classes (built on first use so importing this module needs no torch)."""
    import torch
    from torch import nn
    import torch.nn.functional as F

    class RMSNorm(nn.Module):
        def __init__(self, n, eps):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(n))
            self.eps = eps

        def forward(self, x):
            return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight

    class Block(nn.Module):
        def __init__(self, c):
            super().__init__()
            h, hd = c.hidden_size, c.head_dim
            self.c = c
            self.attn_norm, self.ffn_norm = RMSNorm(h, c.rms_eps), RMSNorm(h, c.rms_eps)
            self.q = nn.Linear(h, c.num_heads * hd, bias=False)
            self.k = nn.Linear(h, c.num_kv_heads * hd, bias=False)
            self.v = nn.Linear(h, c.num_kv_heads * hd, bias=False)
            self.o = nn.Linear(c.num_heads * hd, h, bias=False)
            self.q_norm, self.k_norm = RMSNorm(hd, c.rms_eps), RMSNorm(hd, c.rms_eps)
            self.router = nn.Linear(h, c.num_experts, bias=False)
            e, f = c.num_experts, c.expert_ffn
            self.w_gate = nn.Parameter(torch.randn(e, h, f) / math.sqrt(h))
            self.w_up = nn.Parameter(torch.randn(e, h, f) / math.sqrt(h))
            self.w_down = nn.Parameter(torch.randn(e, f, h) / math.sqrt(f) / math.sqrt(2 * c.num_layers))
            nn.init.normal_(self.o.weight, std=1 / math.sqrt(h) / math.sqrt(2 * c.num_layers))

        def attention(self, x, cos, sin):
            c = self.c
            b, t, _ = x.shape
            q = self.q_norm(self.q(x).view(b, t, c.num_heads, c.head_dim))
            k = self.k_norm(self.k(x).view(b, t, c.num_kv_heads, c.head_dim))
            v = self.v(x).view(b, t, c.num_kv_heads, c.head_dim)
            rot = lambda a: torch.cat([a[..., :a.shape[-1] // 2] * cos - a[..., a.shape[-1] // 2:] * sin,
                                       a[..., a.shape[-1] // 2:] * cos + a[..., :a.shape[-1] // 2] * sin], -1)
            q, k = rot(q), rot(k)
            rep = c.num_heads // c.num_kv_heads
            k, v = k.repeat_interleave(rep, dim=2), v.repeat_interleave(rep, dim=2)
            o = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2),
                                               v.transpose(1, 2), is_causal=True)
            return self.o(o.transpose(1, 2).reshape(b, t, -1))

        def moe(self, x, k):
            """Routed experts at top-``k``; returns the output, the balance and ranking losses."""
            c = self.c
            shape = x.shape
            x = x.reshape(-1, shape[-1])
            probs = torch.softmax(self.router(x), dim=-1)
            top_w, top_i = probs.topk(k, dim=-1)
            top_w = top_w / top_w.sum(-1, keepdim=True)
            # Tokens grouped per expert into one padded [experts, most, hidden] batch: three
            # batched products instead of a Python loop of small ones (and of their gradients).
            flat_e = top_i.reshape(-1)
            flat_tok = torch.arange(len(x)).repeat_interleave(k)
            order = torch.argsort(flat_e, stable=True)
            counts = torch.bincount(flat_e, minlength=c.num_experts)
            e_sorted, tok = flat_e[order], flat_tok[order]
            rank = torch.arange(len(order)) - (torch.cumsum(counts, 0) - counts)[e_sorted]
            buf = x.new_zeros(c.num_experts, int(counts.max()), shape[-1])
            buf = buf.index_put((e_sorted, rank), x[tok])
            hidden = F.silu(torch.bmm(buf, self.w_gate)) * torch.bmm(buf, self.w_up)
            y = torch.bmm(hidden, self.w_down)[e_sorted, rank] * top_w.reshape(-1)[order, None]
            out = torch.zeros_like(x).index_add_(0, tok, y)
            frac = counts.float() / counts.sum()
            balance = c.num_experts * (frac * probs.mean(0)).sum()
            ranking = -(probs * torch.log(probs + 1e-9)).sum(-1).mean()
            return out.reshape(shape), balance, ranking

        def forward(self, x, cos, sin, k):
            x = x + self.attention(self.attn_norm(x), cos, sin)
            y, balance, ranking = self.moe(self.ffn_norm(x), k)
            return x + y, balance, ranking

    class ByteMoE(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.c = c
            self.embed = nn.Embedding(c.vocab_size, c.hidden_size)
            self.blocks = nn.ModuleList(Block(c) for _ in range(c.num_layers))
            self.norm = RMSNorm(c.hidden_size, c.rms_eps)
            self.lm_head = nn.Linear(c.hidden_size, c.vocab_size, bias=False)
            nn.init.normal_(self.embed.weight, std=1.0)
            half = c.head_dim // 2
            self.inv_freq = c.rope_theta ** (-torch.arange(half, dtype=torch.float64) * 2 / c.head_dim)

        def forward(self, tokens, k):
            pos = torch.arange(tokens.shape[1], dtype=torch.float64)
            ang = (pos[:, None] * self.inv_freq[None, :]).float()
            cos, sin = torch.cos(ang)[:, None, :], torch.sin(ang)[:, None, :]
            x = self.embed(tokens)
            balance = ranking = 0.0
            for block in self.blocks:
                x, b, r = block(x, cos, sin, k)
                balance, ranking = balance + b, ranking + r
            n = len(self.blocks)
            return self.lm_head(self.norm(x)), balance / n, ranking / n

    return torch, ByteMoE


def _tensors(model, torch):
    """The model's weights under Qwen3-MoE names, BF16, HF layout ``[out, in]``."""
    out = {"model.embed_tokens.weight": model.embed.weight, "model.norm.weight": model.norm.weight,
           "lm_head.weight": model.lm_head.weight}
    for i, b in enumerate(model.blocks):
        p = f"model.layers.{i}."
        out.update({p + "input_layernorm.weight": b.attn_norm.weight,
                    p + "post_attention_layernorm.weight": b.ffn_norm.weight,
                    p + "self_attn.q_proj.weight": b.q.weight, p + "self_attn.k_proj.weight": b.k.weight,
                    p + "self_attn.v_proj.weight": b.v.weight, p + "self_attn.o_proj.weight": b.o.weight,
                    p + "self_attn.q_norm.weight": b.q_norm.weight,
                    p + "self_attn.k_norm.weight": b.k_norm.weight,
                    p + "mlp.gate.weight": b.router.weight})
        for e in range(b.w_gate.shape[0]):
            q = p + f"mlp.experts.{e}."
            out.update({q + "gate_proj.weight": b.w_gate[e].T, q + "up_proj.weight": b.w_up[e].T,
                        q + "down_proj.weight": b.w_down[e].T})
    return {name: t.detach().to(torch.bfloat16).contiguous() for name, t in out.items()}


def train(variant, out_dir=None, settings=None, config=TRAINED_CONFIG, progress=None):
    """Train ``variant`` ("standard" or "elastic") and write it to ``out_dir`` (default: the
    shipped model's directory). Returns a summary dict (final training loss, seconds, steps)."""
    if variant not in VARIANTS:
        raise ValueError(f"model variant must be one of {', '.join(VARIANTS)}, not {variant!r}")
    settings = settings or TrainConfig()
    from safetensors.torch import save_file
    from sw_model.model.corpus import training_bytes
    torch, ByteMoE = _modules()
    torch.set_num_threads(settings.threads)
    torch.manual_seed(settings.seed)
    gen = torch.Generator().manual_seed(settings.seed + 1)
    data = torch.from_numpy(training_bytes().astype(np.int64))
    model = ByteMoE(config)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "embed" not in n]
    other = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "embed" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": settings.weight_decay},
                             {"params": other, "weight_decay": 0.0}], lr=settings.lr,
                            betas=(0.9, 0.95))
    s = settings
    schedule = lambda step: min(1.0, (step + 1) / s.warmup) * (
        0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, step / s.steps))))
    start, losses = time.monotonic(), []
    k = config.top_k
    for step in range(s.steps):
        starts = torch.randint(0, len(data) - s.seq_len - 1, (s.batch,), generator=gen)
        batch = torch.stack([data[i:i + s.seq_len + 1] for i in starts.tolist()])
        k_step = k if variant == "standard" else int(torch.randint(1, 3 * k + 1, (1,),
                                                                   generator=gen))
        logits, balance, ranking = model(batch[:, :-1], k_step)
        lm = torch.nn.functional.cross_entropy(logits.reshape(-1, config.vocab_size),
                                               batch[:, 1:].reshape(-1))
        loss = lm + s.balance_coef * balance
        if variant == "elastic":
            loss = loss + s.ranking_coef * ranking
        for g in opt.param_groups:
            g["lr"] = s.lr * schedule(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(float(lm.detach()))
        if progress is not None and (step % 50 == 0 or step == s.steps - 1):
            progress(f"{variant} step {step}/{s.steps}: loss {np.mean(losses[-50:]):.3f} "
                     f"(k' {k_step}), {time.monotonic() - start:.0f} s")
    out_dir = Path(out_dir) if out_dir is not None else model_dir(variant)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(_tensors(model, torch), str(out_dir / "model.safetensors"),
              metadata={"format": "pt"})
    summary = {"variant": variant, "steps": s.steps, "tokens": s.steps * s.batch * s.seq_len,
               "final_train_loss": float(np.mean(losses[-50:])),
               "seconds": round(time.monotonic() - start, 1), "settings": s.__dict__}
    cfg = hf_config(config, variant)
    cfg["elmoe_train_summary"] = summary
    (out_dir / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    return summary
