"""Acceptance measured by ``python build.py ablate``, shipped as constants so ``perf`` needs no
torch, no checkpoint and no rerun of ``python build.py ablate``.

Source: ``python build.py ablate`` (defaults: 24 held-out prompts of 24..48 bytes, 32 new tokens,
gamma 6, greedy, seed 0) on the shipped trained model ``elmoe-byte-standard`` (4 layers, hidden
128, 32 experts x FFN 64, top-4), 4-bit LSB-augmented draft (a 317 s run): mean accepted lengths
2.74 / 3.85 / 4.65 / 6.48 for the frequency set, and the per-gamma curves it prints in its JSON
(``tokens_per_verification``).

:data:`TOKENS_PER_VERIFICATION` ``[selection][fraction]`` is ``E(g)`` for ``g = 1 .. 6``: the
mean tokens a sequence keeps per verification with a chain of ``g`` drafts (accepted drafts plus
the target's own token; ``E(6)`` is the run's mean accepted length, the shorter chains are the
ablation's prefix estimate ``1 + mean(min(n, g))``), when ``fraction`` of each layer's experts
are resident (4, 8, 16 of 32; 1.0: all 32, the draft-bit run ``augmented:4``, where the selection
rule no longer matters). Selections: ``frequency`` (the previous draft's most chosen experts,
ELMoE-3D), ``random`` (a fresh random set per step), ``lru`` (the most recently chosen).
"""

__all__ = ["ABLATE_GAMMA", "ABLATE_MODEL", "TOKENS_PER_VERIFICATION", "ABLATE_SOURCE"]

ABLATE_GAMMA = 6
ABLATE_MODEL = "elmoe-byte-standard (4 layers, hidden 128, 32 experts, top-4)"
ABLATE_SOURCE = ("python build.py ablate (24 held-out prompts, 32 new tokens, gamma 6, "
                 "greedy, 4-bit augmented draft) on the shipped elmoe-byte-standard")

#: every expert resident (bit-policy run augmented:4; acceptance 0.913)
_ALL = (1.9685, 2.9213, 3.8504, 4.7559, 5.6299, 6.4803)

TOKENS_PER_VERIFICATION = {
    "frequency": {
        0.125: (1.6298, 2.0208, 2.3218, 2.5017, 2.6298, 2.7370),
        0.25: (1.7156, 2.2701, 2.7299, 3.1422, 3.5213, 3.8531),
        0.5: (1.8057, 2.5029, 3.1257, 3.6800, 4.1886, 4.6514),
        1.0: _ALL,
    },
    "random": {
        0.125: (1.5491, 1.8650, 2.0706, 2.2331, 2.3497, 2.4663),
        0.25: (1.6832, 2.0330, 2.2277, 2.3630, 2.4917, 2.6172),
        0.5: (1.7066, 2.1901, 2.5744, 2.8760, 3.1322, 3.3843),
        1.0: _ALL,
    },
    "lru": {
        0.125: (1.5198, 1.8511, 2.0578, 2.1884, 2.3070, 2.4164),
        0.25: (1.6217, 2.0749, 2.3708, 2.5955, 2.7790, 2.9551),
        0.5: (1.8000, 2.5143, 3.1371, 3.6629, 4.1429, 4.6057),
        1.0: _ALL,
    },
}
