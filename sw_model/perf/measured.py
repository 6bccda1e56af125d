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

The token-tree tables (:data:`TREE_SOURCE`: ``python build.py ablate --study trees``) hold, per
draft shape (chains of 8, 16 and 32 drafts and the static and dynamic trees measured at those
verify budgets) and resident share, the tokens kept per verification and per verified token, and
the experts one sequence's verification touches against a chain's consecutive positions: what
the performance model's tree mapping reads (:class:`sw_model.perf.workload.AcceptanceModel`).
"""

__all__ = ["ABLATE_GAMMA", "ABLATE_MODEL", "TOKENS_PER_VERIFICATION", "ABLATE_SOURCE",
           "ABLATE_EXPERTS", "TREE_SOURCE", "TREE_SHARES", "TREE_TOKENS_PER_VERIFICATION",
           "TREE_TOKENS_PER_VERIFIED", "TREE_SEQUENCE_UNION", "TREE_BATCH_UNION",
           "TREE_DRAFT_UNION", "CHAIN_WINDOW_UNION", "TREE_BUDGET_SHAPES", "TREE_BEST_STATIC",
           "TREE_BEST_DYNAMIC"]

ABLATE_GAMMA = 6
#: Experts per MoE layer of the measured model.
ABLATE_EXPERTS = 32
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


# -- chains and token trees ---------------------------------------------------------------------
#
# Source: TREE_SOURCE. Every table is keyed by the draft shape (``chain:<gamma>``: a chain of
# that many drafts; ``static:...`` / ``dynamic:...``: :func:`sw_model.decode.tree.parse_tree`)
# and holds one value per resident share of :data:`TREE_SHARES` (4, 8, 16 and 32 of the 32
# experts of a layer resident; frequency set, plain per-layer cache).

TREE_SHARES = (0.125, 0.25, 0.5, 1.0)

TREE_SOURCE = ("python build.py ablate --study trees (24 held-out prompts of 24..48 bytes, "
               "24 new tokens, greedy, seed 1, 4-bit augmented draft, frequency set, "
               "plain cache; 15.6 min of CPU) on the shipped elmoe-byte-standard")

#: Tokens a sequence keeps per verification (E: accepted drafts plus the target's token).
TREE_TOKENS_PER_VERIFICATION = {
    "chain:8": (2.7376, 4.0065, 5.0480, 7.9250),
    "static:4,1": (2.4402, 2.6528, 2.8442, 2.9844),
    "static:2,3": (2.5625, 2.6406, 2.8650, 3.0000),
    "static:2,1,1,1": (3.1257, 3.5148, 4.1127, 4.7619),
    "dynamic:nodes=8,depth=2,k=4,width=4": (2.6182, 2.7961, 2.8939, 2.9948),
    "dynamic:nodes=8,depth=4,k=2,width=2": (3.0155, 3.5854, 4.2482, 4.7520),
    "chain:16": (3.0922, 5.0538, 6.8824, 13.4815),
    "static:4,3": (2.6744, 2.8039, 2.9235, 3.0000),
    "static:4,1,1,1": (3.0469, 3.8153, 4.1620, 4.7619),
    "static:2,1,1,1,1,1,1,1": (3.2652, 4.7344, 5.7570, 8.1026),
    "dynamic:nodes=16,depth=4,k=4,width=4": (3.3506, 3.9664, 4.4697, 4.8843),
    "dynamic:nodes=16,depth=8,k=2,width=2": (3.4489, 4.8333, 6.0882, 7.8875),
    "chain:32": (3.4308, 5.3582, 8.1196, 21.2368),
    "static:8,1,1,1": (3.5030, 3.9866, 4.3285, 4.7619),
    "static:4,2,1,1": (3.3068, 4.0972, 4.3556, 4.9333),
    "static:4,1,1,1,1,1,1,1": (3.2404, 4.9120, 5.9524, 8.1026),
    "dynamic:nodes=32,depth=8,k=4,width=4": (3.8590, 5.8333, 6.7717, 8.2237),
    "dynamic:nodes=32,depth=16,k=2,width=2": (3.7727, 5.6864, 8.6203, 12.1228),
}

#: Tokens kept per token the verification carries (E / (nodes + 1)).
TREE_TOKENS_PER_VERIFIED = {
    "chain:8": (0.3042, 0.4452, 0.5609, 0.8806),
    "static:4,1": (0.2711, 0.2948, 0.3160, 0.3316),
    "static:2,3": (0.2847, 0.2934, 0.3183, 0.3333),
    "static:2,1,1,1": (0.3473, 0.3905, 0.4570, 0.5291),
    "dynamic:nodes=8,depth=2,k=4,width=4": (0.2909, 0.3107, 0.3215, 0.3328),
    "dynamic:nodes=8,depth=4,k=2,width=2": (0.3351, 0.3984, 0.4720, 0.5280),
    "chain:16": (0.1819, 0.2973, 0.4048, 0.7930),
    "static:4,3": (0.1573, 0.1649, 0.1720, 0.1765),
    "static:4,1,1,1": (0.1792, 0.2244, 0.2448, 0.2801),
    "static:2,1,1,1,1,1,1,1": (0.1921, 0.2785, 0.3386, 0.4766),
    "dynamic:nodes=16,depth=4,k=4,width=4": (0.1971, 0.2333, 0.2629, 0.2873),
    "dynamic:nodes=16,depth=8,k=2,width=2": (0.2029, 0.2843, 0.3581, 0.4640),
    "chain:32": (0.1040, 0.1624, 0.2460, 0.6435),
    "static:8,1,1,1": (0.1062, 0.1208, 0.1312, 0.1443),
    "static:4,2,1,1": (0.1140, 0.1413, 0.1502, 0.1701),
    "static:4,1,1,1,1,1,1,1": (0.0982, 0.1488, 0.1804, 0.2455),
    "dynamic:nodes=32,depth=8,k=4,width=4": (0.1169, 0.1768, 0.2052, 0.2492),
    "dynamic:nodes=32,depth=16,k=2,width=2": (0.1143, 0.1723, 0.2612, 0.3674),
}

#: Distinct experts per layer one sequence's verification touches (mean over sequences and
#: steps).
TREE_SEQUENCE_UNION = {
    "chain:8": (15.53, 15.12, 14.98, 14.34),
    "static:4,1": (16.90, 17.03, 17.35, 17.62),
    "static:2,3": (16.86, 17.32, 17.25, 17.56),
    "static:2,1,1,1": (16.13, 16.18, 16.11, 16.37),
    "dynamic:nodes=8,depth=2,k=4,width=4": (16.74, 16.79, 17.03, 17.30),
    "dynamic:nodes=8,depth=4,k=2,width=2": (16.22, 16.31, 15.85, 16.20),
    "chain:16": (18.02, 17.42, 17.34, 16.87),
    "static:4,3": (21.09, 21.28, 21.47, 21.88),
    "static:4,1,1,1": (20.54, 20.54, 20.66, 21.28),
    "static:2,1,1,1,1,1,1,1": (19.29, 19.29, 19.01, 19.34),
    "dynamic:nodes=16,depth=4,k=4,width=4": (20.31, 20.64, 20.65, 20.88),
    "dynamic:nodes=16,depth=8,k=2,width=2": (19.71, 19.76, 19.00, 19.27),
    "chain:32": (20.45, 18.87, 19.43, 19.66),
    "static:8,1,1,1": (24.15, 24.39, 24.64, 25.09),
    "static:4,2,1,1": (23.37, 23.33, 23.70, 24.46),
    "static:4,1,1,1,1,1,1,1": (22.84, 22.97, 23.08, 23.72),
    "dynamic:nodes=32,depth=8,k=4,width=4": (23.34, 23.19, 23.13, 23.79),
    "dynamic:nodes=32,depth=16,k=2,width=2": (21.92, 22.46, 21.77, 22.09),
}

#: Distinct experts per layer the batch's verification touches (24 sequences).
TREE_BATCH_UNION = {
    "chain:8": (29.75, 27.46, 26.42, 26.50),
    "static:4,1": (31.55, 30.41, 30.05, 31.81),
    "static:2,3": (31.25, 30.93, 30.82, 31.75),
    "static:2,1,1,1": (30.41, 30.58, 30.47, 31.50),
    "dynamic:nodes=8,depth=2,k=4,width=4": (30.70, 30.85, 31.28, 31.66),
    "dynamic:nodes=8,depth=4,k=2,width=2": (29.73, 29.20, 29.41, 30.62),
    "chain:16": (30.09, 29.39, 27.05, 28.67),
    "static:4,3": (30.64, 30.75, 31.64, 31.91),
    "static:4,1,1,1": (30.25, 29.36, 31.53, 31.67),
    "static:2,1,1,1,1,1,1,1": (29.94, 30.35, 30.06, 31.50),
    "dynamic:nodes=16,depth=4,k=4,width=4": (31.37, 30.17, 30.79, 30.58),
    "dynamic:nodes=16,depth=8,k=2,width=2": (30.00, 31.08, 29.09, 31.62),
    "chain:32": (30.29, 30.68, 27.40, 27.58),
    "static:8,1,1,1": (31.00, 31.19, 30.88, 31.88),
    "static:4,2,1,1": (31.07, 30.44, 31.79, 31.90),
    "static:4,1,1,1,1,1,1,1": (31.23, 30.48, 30.12, 31.81),
    "dynamic:nodes=32,depth=8,k=4,width=4": (30.44, 30.72, 31.38, 31.75),
    "dynamic:nodes=32,depth=16,k=2,width=2": (31.16, 30.58, 29.69, 29.75),
}

#: Distinct experts per layer the batch's draft passes touch together (inside the resident
#: set).
TREE_DRAFT_UNION = {
    "chain:8": (4.00, 7.96, 14.53, 26.45),
    "static:4,1": (4.00, 7.89, 15.38, 31.09),
    "static:2,3": (4.00, 7.89, 15.55, 30.38),
    "static:2,1,1,1": (4.00, 8.00, 15.78, 31.08),
    "dynamic:nodes=8,depth=2,k=4,width=4": (4.00, 7.97, 15.97, 31.16),
    "dynamic:nodes=8,depth=4,k=2,width=2": (4.00, 8.00, 15.56, 30.46),
    "chain:16": (4.00, 8.00, 14.65, 28.67),
    "static:4,3": (4.00, 7.92, 15.92, 31.12),
    "static:4,1,1,1": (4.00, 7.98, 15.97, 31.42),
    "static:2,1,1,1,1,1,1,1": (4.00, 8.00, 15.88, 31.50),
    "dynamic:nodes=16,depth=4,k=4,width=4": (4.00, 8.00, 15.96, 29.96),
    "dynamic:nodes=16,depth=8,k=2,width=2": (4.00, 8.00, 15.56, 31.56),
    "chain:32": (4.00, 8.00, 14.90, 27.75),
    "static:8,1,1,1": (4.00, 7.97, 15.91, 31.83),
    "static:4,2,1,1": (4.00, 7.97, 16.00, 31.90),
    "static:4,1,1,1,1,1,1,1": (4.00, 8.00, 15.81, 31.81),
    "dynamic:nodes=32,depth=8,k=4,width=4": (4.00, 8.00, 15.92, 31.75),
    "dynamic:nodes=32,depth=16,k=2,width=2": (4.00, 8.00, 15.84, 29.69),
}

#: One sequence's distinct experts per layer over the first ``w`` positions of a chain's
#: verification, ``w = 1, 2, ...`` (mean over the chain runs reaching ``w``): the chain a tree
#: is compared with at the same verified tokens.
CHAIN_WINDOW_UNION = {
    0.125: (4.00, 6.99, 9.35, 11.20, 12.66, 13.73, 14.55, 15.19, 15.73, 16.25, 16.70, 17.06,
           17.39, 17.63, 17.87, 18.07, 18.24, 18.64, 18.82, 19.00, 19.15, 19.33, 19.49, 19.63,
           19.76, 19.83, 19.93, 20.03, 20.12, 20.23, 20.32, 20.39, 20.45),
    0.25: (4.00, 6.98, 9.34, 11.19, 12.67, 13.76, 14.50, 15.11, 15.57, 16.23, 16.54, 16.80, 17.03,
           17.25, 17.38, 17.53, 17.62, 17.95, 18.05, 18.14, 18.22, 18.30, 18.38, 18.42, 18.48,
           18.53, 18.57, 18.63, 18.71, 18.74, 18.78, 18.85, 18.87),
    0.5: (4.00, 6.87, 9.24, 11.08, 12.48, 13.55, 14.39, 15.03, 15.47, 16.14, 16.57, 16.90, 17.18,
           17.39, 17.54, 17.67, 17.86, 18.55, 18.68, 18.81, 18.89, 18.96, 19.01, 19.05, 19.09,
           19.13, 19.21, 19.23, 19.28, 19.34, 19.38, 19.40, 19.43),
    1.0: (4.00, 6.70, 8.88, 10.64, 11.97, 12.95, 13.82, 14.56, 15.08, 16.06, 16.43, 16.79, 17.02,
           17.23, 17.41, 17.55, 17.69, 18.66, 18.78, 18.86, 18.97, 19.07, 19.14, 19.20, 19.27,
           19.38, 19.44, 19.47, 19.48, 19.51, 19.57, 19.62, 19.66),
}

#: The shapes measured at each verify budget (draft nodes per sequence), the chain first.
TREE_BUDGET_SHAPES = {
    8: (
        "chain:8",
        "static:4,1",
        "static:2,3",
        "static:2,1,1,1",
        "dynamic:nodes=8,depth=2,k=4,width=4",
        "dynamic:nodes=8,depth=4,k=2,width=2",
    ),
    16: (
        "chain:16",
        "static:4,3",
        "static:4,1,1,1",
        "static:2,1,1,1,1,1,1,1",
        "dynamic:nodes=16,depth=4,k=4,width=4",
        "dynamic:nodes=16,depth=8,k=2,width=2",
    ),
    32: (
        "chain:32",
        "static:8,1,1,1",
        "static:4,2,1,1",
        "static:4,1,1,1,1,1,1,1",
        "dynamic:nodes=32,depth=8,k=4,width=4",
        "dynamic:nodes=32,depth=16,k=2,width=2",
    ),
}

#: The static and the dynamic shape of each budget keeping the most tokens per verification on
#: average over the shares.
TREE_BEST_STATIC = {
    8: "static:2,1,1,1",
    16: "static:2,1,1,1,1,1,1,1",
    32: "static:4,1,1,1,1,1,1,1",
}
TREE_BEST_DYNAMIC = {
    8: "dynamic:nodes=8,depth=4,k=2,width=2",
    16: "dynamic:nodes=16,depth=8,k=2,width=2",
    32: "dynamic:nodes=32,depth=16,k=2,width=2",
}
