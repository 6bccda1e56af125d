"""The model zoo: the public configurations of eight MoE language models (their Hugging Face
``config.json`` values) as :class:`sw_model.model.moe.MoEConfig` shapes, for the scheduler and the
performance model.

Every entry of the table is here with its layer count, hidden size, expert width, routed experts,
top-k, shared experts, dense layers and vocabulary. Where the golden model's architecture differs
from the real one, the entry says so in ``notes`` and the stand-in is chosen so that the **expert
shapes are exact** (they are what the accelerator's memory system moves); only dense weights
(attention, held in HB) are approximated:

* MLA attention (GLM-4.7-Flash, DeepSeek-V2-Lite; the golden model and the checkpoint loader do
  model it, the zoo's shapes keep the earlier stand-in): a grouped-query stand-in of
  ``hidden / 128`` heads of 128 stands in (DeepSeek-V2-Lite's MLA projections hold ~13.8 M weights
  per layer, the stand-in 16.8 M).
* GPT-OSS-20B stores its experts in MXFP4 (4.25 bits per weight); the accelerator's number format is
  INT8 with FP16 group scales, so the zoo schedules INT8 experts of the same shape (``expert_format``
  records the original). Its alternating sliding-window attention changes only the KV cache, which
  the scheduler does not move.
* Head counts not in the table (OLMoE, Qwen1.5-MoE: 16 heads of 128, no GQA) are the published
  configs'.

Each :class:`ZooEntry` also names the real checkpoint it corresponds to (``checkpoint``: the Hugging
Face repository; ``scheme``: the loader's architecture for it, :mod:`sw_model.model.checkpoints`,
None where the loader has none), so the same model can be loaded with ``--checkpoint`` once
downloaded. It carries the published total parameter count where the table gives one;
:meth:`ZooEntry.weight_count` counts the stand-in's weights, so a test can show the shapes are right.
"""

from dataclasses import dataclass

from sw_model.model.moe import MoEConfig

__all__ = ["ZooEntry", "ZOO", "zoo_entry", "zoo_names"]


@dataclass(frozen=True)
class ZooEntry:
    """One zoo model: ``config`` (the golden model's shape), the original ``expert_format`` and
    ``attention`` kind, the published ``total_params`` (None if not given) and ``notes``."""
    name: str
    config: MoEConfig
    expert_format: str = "int8"
    attention: str = "gqa"
    total_params: float = None
    notes: str = ""
    checkpoint: str = None
    scheme: str = None

    def weight_count(self):
        """Weights of the stand-in: experts, attention, routers, shared/dense FFNs, embedding and
        LM head (norms and biases left out)."""
        c = self.config
        h = c.hidden_size
        attn = h * (c.num_heads + 2 * c.num_kv_heads) * c.head_dim + c.num_heads * c.head_dim * h
        moe = c.num_experts * c.expert_weight_count + h * c.num_experts + 3 * h * c.shared_ffn
        dense = 3 * h * c.dense_ffn
        layers = sum(attn + (dense if i in c.dense_layers else moe) for i in range(c.num_layers))
        head = c.vocab_size * h * (1 if c.tie_embeddings else 2)
        return layers + head


def _entry(name, notes="", expert_format="int8", attention="gqa", total=None, checkpoint=None,
           scheme=None, **shape):
    config = MoEConfig(name=name, **shape)
    return ZooEntry(name, config, expert_format, attention, total, notes, checkpoint, scheme)


ZOO = {e.name: e for e in [
    _entry("qwen3-30b-a3b", checkpoint="Qwen/Qwen3-30B-A3B", scheme='qwen3_moe', total=30.5e9,
           vocab_size=151936, hidden_size=2048, num_layers=48, num_heads=32, num_kv_heads=4,
           head_dim=128, num_experts=128, top_k=8, expert_ffn=768, qk_norm="head",
           rope_theta=1e6),
    _entry("glm-4.7-flash", checkpoint="zai-org/GLM-4.7-Flash", scheme='glm4_moe_lite', attention="mla",
           notes="MLA attention modelled by a 16 x 128 GQA stand-in; sigmoid router",
           vocab_size=154880, hidden_size=2048, num_layers=47, num_heads=16, num_kv_heads=16,
           head_dim=128, num_experts=64, top_k=4, expert_ffn=1536, scoring="sigmoid",
           score_bias=True, shared_ffn=1536, dense_layers=(0,), dense_ffn=10240),
    _entry("deepseek-v2-lite", checkpoint="deepseek-ai/DeepSeek-V2-Lite", scheme='deepseek_v2', attention="mla", total=15.7e9,
           notes="MLA attention (kv rank 512) modelled by a 16 x 128 GQA stand-in",
           vocab_size=102400, hidden_size=2048, num_layers=27, num_heads=16, num_kv_heads=16,
           head_dim=128, num_experts=64, top_k=6, expert_ffn=1408, norm_topk_prob=False,
           shared_ffn=2 * 1408, dense_layers=(0,), dense_ffn=10944),
    _entry("gpt-oss-20b", checkpoint="openai/gpt-oss-20b", scheme='gpt_oss', expert_format="mxfp4", attention="alternating sliding/full",
           total=20.9e9,
           notes="experts are MXFP4 in the release; scheduled as INT8 of the same shape",
           vocab_size=201088, hidden_size=2880, num_layers=24, num_heads=64, num_kv_heads=8,
           head_dim=64, num_experts=32, top_k=4, expert_ffn=2880, attention_bias=True),
    _entry("mixtral-8x7b", checkpoint="mistralai/Mixtral-8x7B-v0.1", scheme='mixtral', total=46.7e9,
           vocab_size=32000, hidden_size=4096, num_layers=32, num_heads=32, num_kv_heads=8,
           head_dim=128, num_experts=8, top_k=2, expert_ffn=14336, rope_theta=1e6),
    _entry("olmoe-1b-7b", checkpoint="allenai/OLMoE-1B-7B-0924", scheme='olmoe', total=6.9e9,
           vocab_size=50304, hidden_size=2048, num_layers=16, num_heads=16, num_kv_heads=16,
           head_dim=128, num_experts=64, top_k=8, expert_ffn=1024, norm_topk_prob=False,
           qk_norm="full"),
    _entry("qwen1.5-moe-a2.7b", checkpoint="Qwen/Qwen1.5-MoE-A2.7B", scheme='qwen2_moe',
           notes="4 shared experts of 1408 as one gated SwiGLU of 5632",
           vocab_size=151936, hidden_size=2048, num_layers=24, num_heads=16, num_kv_heads=16,
           head_dim=128, num_experts=60, top_k=4, expert_ffn=1408, norm_topk_prob=False,
           shared_ffn=5632, shared_gate=True, attention_bias=True),
    _entry("phi-3.5-moe", checkpoint="microsoft/Phi-3.5-MoE-instruct", scheme=None,
           vocab_size=32064, hidden_size=4096, num_layers=32, num_heads=32, num_kv_heads=8,
           head_dim=128, num_experts=16, top_k=2, expert_ffn=6400),
]}


def zoo_names():
    return list(ZOO)


def zoo_entry(name):
    """The entry called ``name`` (case-insensitive); ValueError listing the names otherwise."""
    key = str(name).lower()
    if key not in ZOO:
        raise ValueError(f"unknown model {name!r}; the zoo holds {', '.join(ZOO)} "
                         f"(or use 'default' or --checkpoint)")
    return ZOO[key]
