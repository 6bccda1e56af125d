"""Token trees for Elastic-SD: their shapes, how a draft grows one, and lossless acceptance.

A draft tree hangs below its **root**, the last token a sequence has emitted (not yet in the KV
cache). Node 0 is the root; nodes are numbered breadth-first (every depth's nodes follow the
previous depth's, children of a node in the order they were drafted), so the tree is given by
``parents`` (``parents[0] = -1``) and ``tokens``. A chain of ``gamma`` drafts is the static shape
``(1,) * gamma``.

**Shapes** (:func:`parse_tree`, the decoding policy's ``tree`` field):

* ``chain``: no tree; the decoder drafts a chain of ``gamma`` tokens (its own code path).
* ``static:w1,w2,...``: every node at depth ``d - 1`` gets ``w_d`` children (the root ``w1``): a
  tree of ``w1 + w1*w2 + ...`` nodes, as deep as the list is long.
* ``dynamic:nodes=N,depth=D,k=K,width=W``: the EAGLE-2 idea (expand where the draft is confident)
  under a node budget. Depth by depth, every node of the deepest level is drafted in one pass;
  each offers ``K`` child slots, slot ``i`` of node ``n`` scored ``c(n) * q_n[i]`` (``c(n)``: the
  product of the draft probabilities along its path; ``q_n[i]``: the ``i``-th largest probability
  of its draft distribution), and the ``min(W, N - nodes so far)`` best slots become children
  (ties: the lower node, then the lower slot), until ``N`` nodes or depth ``D``. Unlike EAGLE-2 no
  node is pruned after it was drafted, and the slots are scored from the distributions, not from
  the tokens drawn into them: how many children a node gets never depends on which tokens they
  are, which the sampling rule below needs.

**Drafting** (one forward pass per depth over that depth's nodes, with the tree mask): greedy
(temperature 0) a node's children are its ``m`` most probable tokens (ties to the lower id);
sampling, ``m`` tokens drawn without replacement from the draft distribution at the temperature
(Gumbel top-``m``: the same law as drawing one at a time and renormalising), in draw order.

**Acceptance.** Greedy (:func:`accept_tree_greedy`): from the root, follow the child whose token is
the target's argmax; the first node without one ends the path, and the target's argmax there is
the token it emits: exactly target-only greedy decoding. Sampling (:func:`accept_tree_sampling`):
recursive rejection sampling without replacement (Jeon et al., "Recursive Speculative Decoding:
Accelerating LLM Inference via Sampling Without Replacement", 2024; the with-replacement form is
SpecInfer's, Miao et al. 2024). At a node with target distribution ``p`` and draft distribution
``q``, its children ``x_1, x_2, ...`` (drawn without replacement from ``q``) are tried in draw
order: ``x_i`` is accepted with probability ``min(1, p(x_i) / q(x_i))``, and the walk moves to it;
on rejection ``p <- norm(max(p - q, 0))`` and ``q <- q`` without ``x_i``, renormalised. When every
child is rejected the token is drawn from the last ``p``. Why it keeps the target's law, by
induction on the number of children: with ``x_1 ~ q`` the step emits ``x`` through acceptance with
probability ``min(p(x), q(x))``, and rejects with probability ``Z = sum max(p - q, 0)``, after
which the rest (the same rule on ``(norm(max(p - q, 0)), q without x_1)``, whose ``x_2`` is
exactly a draw from the latter) emits the residual's law by induction: in all
``min(p, q) + max(p - q, 0) = p``. The subtree below an accepted child was drafted from the draft's
distribution after that child, independently of the acceptance draws, so the argument repeats
there. :func:`accept_tree_sampling_iid` is the with-replacement rule that keeps ``q`` unchanged: on
trees drawn without replacement it does not keep the target's law (the tests show both).
"""

from dataclasses import dataclass
import math

import numpy as np

from sw_model.model.moe import softmax

__all__ = ["TreeShape", "parse_tree", "TREE_LIMIT", "DraftTree", "grow_children",
           "accept_tree_greedy", "accept_tree_sampling", "accept_tree_sampling_iid", "tree_path"]

#: Most draft nodes (below the root) a tree may hold: a chosen bound, far above the 8-32 node
#: budgets worth verifying (the golden model keeps an ancestor matrix of nodes x nodes per
#: sequence). Whether a tree's verification pass fits a machine's memories is a separate check,
#: made before decoding: :func:`sw_model.compiler.scheduler.check_pass_fits`.
TREE_LIMIT = 255


class TreeError(ValueError):
    """A tree shape that cannot be used; the message names the field."""


@dataclass(frozen=True)
class TreeShape:
    """A static (``widths``) or dynamic (``nodes``, ``depth``, ``k``, ``width``) tree shape
    (module docstring). :attr:`nodes` is the most draft nodes it grows, :attr:`depth` its depth
    (draft passes per step)."""
    kind: str
    widths: tuple = ()
    nodes: int = 0
    depth: int = 0
    k: int = 0
    width: int = 0

    def __post_init__(self):
        if self.kind == "static":
            if not self.widths:
                raise TreeError("tree.widths: a static tree needs at least one depth")
            for d, w in enumerate(self.widths, 1):
                if isinstance(w, bool) or not isinstance(w, int) or w < 1:
                    raise TreeError(f"tree.widths[{d}] (children per node at depth {d}) must be "
                                    f"a positive integer, not {w!r}")
            total, level = 0, 1
            for w in self.widths:
                level *= w
                total += level
            object.__setattr__(self, "nodes", total)
            object.__setattr__(self, "depth", len(self.widths))
        elif self.kind == "dynamic":
            for name in ("nodes", "depth", "k", "width"):
                v = getattr(self, name)
                if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                    raise TreeError(f"tree.{name} must be a positive integer, not {v!r}")
            if self.depth > self.nodes:
                raise TreeError(f"tree.depth ({self.depth}) cannot exceed tree.nodes "
                                f"({self.nodes}): every depth holds a node")
        else:
            raise TreeError(f"tree kind must be 'static' or 'dynamic', not {self.kind!r}")
        if self.nodes > TREE_LIMIT:
            what = (f"tree.widths {','.join(map(str, self.widths))} make {self.nodes} draft nodes"
                    if self.kind == "static" else f"tree.nodes is {self.nodes}")
            raise TreeError(f"{what}, more than the {TREE_LIMIT} a verification pass may carry")

    @property
    def spec(self):
        if self.kind == "static":
            return "static:" + ",".join(map(str, self.widths))
        return f"dynamic:nodes={self.nodes},depth={self.depth},k={self.k},width={self.width}"

    def __str__(self):
        return self.spec

    @property
    def levels(self):
        """Nodes at each depth, the root's (1) first: ``levels[d]`` tokens per sequence the
        ``d``-th draft pass carries (``d < len(levels) - 1``; the deepest level is verified, not
        drafted from). Fixed by the shape alone for both kinds: a dynamic level takes ``min(W,
        N - nodes so far, K * previous level)`` nodes (every node offers ``K`` slots), until the
        budget or the depth ends it."""
        if self.kind == "static":
            out = [1]
            for w in self.widths:
                out.append(out[-1] * w)
            return tuple(out)
        out, total = [1], 0
        while len(out) <= self.depth and total < self.nodes:
            n = min(self.width, self.nodes - total, self.k * out[-1])
            out.append(n)
            total += n
        return tuple(out)

    @property
    def is_chain(self):
        return self.kind == "static" and all(w == 1 for w in self.widths)


def parse_tree(spec):
    """A :class:`TreeShape` from ``spec`` (module docstring), or None for ``"chain"``. A
    :class:`TreeShape` passes through. Raises :class:`TreeError` (a ``ValueError``) naming the
    field."""
    if spec is None or isinstance(spec, TreeShape):
        return spec
    if not isinstance(spec, str):
        raise TreeError(f"tree must be 'chain', 'static:...' or 'dynamic:...', not {spec!r}")
    text = spec.strip()
    if text == "chain":
        return None
    kind, sep, rest = text.partition(":")
    if kind == "static" and sep:
        try:
            widths = tuple(int(w) for w in rest.split(","))
        except ValueError:
            raise TreeError(f"tree {spec!r}: static widths must be comma-separated integers "
                            f"(e.g. static:4,2,1)") from None
        return TreeShape("static", widths=widths)
    if kind == "dynamic" and sep:
        values = {}
        for part in rest.split(","):
            key, eq, value = part.partition("=")
            key = key.strip()
            if not eq or key not in ("nodes", "depth", "k", "width"):
                raise TreeError(f"tree {spec!r}: dynamic takes nodes=, depth=, k=, width= "
                                f"(e.g. dynamic:nodes=16,depth=6,k=4,width=8), not {part!r}")
            try:
                values[key] = int(value)
            except ValueError:
                raise TreeError(f"tree.{key} must be an integer, not {value.strip()!r}") from None
        if "nodes" not in values:
            raise TreeError(f"tree {spec!r}: dynamic needs nodes=")
        n = values["nodes"]
        values.setdefault("depth", max(1, min(n, 8)) if isinstance(n, int) and n > 0 else 1)
        values.setdefault("k", 4)
        values.setdefault("width", max(1, n))
        return TreeShape("dynamic", nodes=n, depth=values["depth"], k=values["k"],
                         width=values["width"])
    raise TreeError(f"tree must be 'chain', 'static:w1,w2,...' or 'dynamic:nodes=N,...', not "
                    f"{spec!r}")


class DraftTree:
    """One sequence's tree as it grows: ``tokens``, ``parents``, ``depth``, each node's path
    probability ``score`` and, per drafted node, the draft logits its children came from."""

    def __init__(self, root):
        self.tokens, self.parents, self.depth = [int(root)], [-1], [0]
        self.score = [1.0]
        self.logits = {}

    def __len__(self):
        return len(self.tokens)

    def add(self, parent, token, score):
        self.tokens.append(int(token))
        self.parents.append(int(parent))
        self.depth.append(self.depth[parent] + 1)
        self.score.append(float(score))

    def level(self, d):
        """Node indices at depth ``d`` (contiguous: breadth-first numbering)."""
        return [j for j, dd in enumerate(self.depth) if dd == d]

    def children(self, node):
        return [j for j, p in enumerate(self.parents) if p == node]


def _ranked(logits):
    """Token ids by decreasing logit, ties to the lower id."""
    return np.argsort(-np.asarray(logits, dtype=np.float64), kind="stable")


def _draw_without_replacement(probs, m, rng):
    """``m`` distinct ids drawn one after another without replacement from ``probs`` (Gumbel
    top-``m``: ordered keys ``log p + G``); fewer when fewer have positive probability."""
    probs = np.asarray(probs, dtype=np.float64)
    support = np.flatnonzero(probs > 0)
    keys = np.log(probs[support]) + rng.gumbel(size=support.size)
    order = np.argsort(-keys, kind="stable")[:m]
    return [int(support[i]) for i in order]


def grow_children(shape, trees, depth, logits, temperature, rng):
    """Add the children of every tree's depth-``depth`` nodes.

    ``logits[b][i]``: the draft logits of tree ``b``'s ``i``-th node at that depth (``trees`` and
    ``logits`` are lists over the trees of one step, in the same order); the dynamic budget is per
    tree. Returns the indices (into ``trees``) of the trees that got children.
    """
    conf = []
    for t, rows in zip(trees, logits):
        level = t.level(depth)
        dist = []
        for j, row in zip(level, rows):
            t.logits[j] = np.asarray(row, dtype=np.float64)
            # the confidence scores are draft probabilities at the sampling temperature
            # (temperature 1 when greedy)
            dist.append(softmax(t.logits[j] / (temperature if temperature > 0 else 1.0)))
        conf.append((level, dist))
    grew = []
    for b, (t, (level, dist)) in enumerate(zip(trees, conf)):
        if shape.kind == "static":
            if depth >= len(shape.widths):
                continue
            counts = {j: shape.widths[depth] for j in level}
        else:
            if depth >= shape.depth or len(t) - 1 >= shape.nodes:
                continue
            slots = []
            for j, q in zip(level, dist):
                top = np.sort(q)[::-1][:shape.k]
                slots.extend((-t.score[j] * float(top[i]), j, i) for i in range(len(top)))
            slots.sort()
            take = min(shape.width, shape.nodes - (len(t) - 1))
            counts = {j: 0 for j in level}
            for _, j, _ in slots[:take]:
                counts[j] += 1
        added = False
        for j, q in zip(level, dist):
            m = counts[j]
            if m == 0:
                continue
            if temperature == 0:
                picks = [int(x) for x in _ranked(t.logits[j])[:m]]
            else:
                picks = _draw_without_replacement(q, m, rng)
            for x in picks:
                t.add(j, x, t.score[j] * float(q[x]))
                added = True
        if added:
            grew.append(b)
    return grew


def tree_path(parents, leaf):
    """The nodes from the root to ``leaf``, both included."""
    path = []
    while leaf >= 0:
        path.append(leaf)
        leaf = parents[leaf]
    return path[::-1]


def _children_of(parents):
    kids = [[] for _ in parents]
    for j, p in enumerate(parents):
        if p >= 0:
            kids[p].append(j)
    return kids


def accept_tree_greedy(tokens, parents, target_logits):
    """Greedy tree verification of one sequence: ``(path, next_token)``, ``path`` the accepted
    nodes after the root (by depth), ``next_token`` the target's argmax after the last of them."""
    kids = _children_of(parents)
    node, path = 0, []
    while True:
        t = int(np.argmax(target_logits[node]))
        nxt = next((c for c in kids[node] if tokens[c] == t), None)
        if nxt is None:
            return path, t
        path.append(nxt)
        node = nxt


def _sampling(tokens, parents, draft_probs, target_probs, rng, renormalise):
    kids = _children_of(parents)
    node, path = 0, []
    while True:
        p = np.array(target_probs[node], dtype=np.float64)
        q = np.array(draft_probs[node], dtype=np.float64) if kids[node] else None
        moved = False
        for c in kids[node]:
            x = tokens[c]
            if rng.random() * q[x] < p[x]:
                path.append(c)
                node, moved = c, True
                break
            residual = np.maximum(p - q, 0.0)
            total = residual.sum()
            if total > 0:                       # else p == q up to rounding: p is then exact
                p = residual / total
            if renormalise:
                q[x] = 0.0
                mass = q.sum()
                if not mass > 0:                # every token drawn: nothing is left to try
                    break
                q = q / mass
        if not moved:
            return path, int(rng.choice(len(p), p=p / p.sum()))


def accept_tree_sampling(tokens, parents, draft_probs, target_probs, rng):
    """Recursive rejection sampling without replacement of one sequence's tree (module
    docstring): ``(path, next_token)``. ``draft_probs[j]``: the draft distribution node ``j``'s
    children were drawn from (at the temperature); ``target_probs[j]``: the target's at node
    ``j``."""
    return _sampling(tokens, parents, draft_probs, target_probs, rng, renormalise=True)


def accept_tree_sampling_iid(tokens, parents, draft_probs, target_probs, rng):
    """The with-replacement rule (``q`` kept after a rejection). Correct only for children drawn
    independently with replacement; on trees drawn without replacement it biases the output (kept
    as the wrong rule the statistical tests must catch)."""
    return _sampling(tokens, parents, draft_probs, target_probs, rng, renormalise=False)
