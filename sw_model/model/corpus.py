"""The offline corpus of the trained default model: the Python standard library on this machine.

Every ``*.py`` file under the running interpreter's standard library (without ``site-packages``
and without the test suites, whose generated and deliberately malformed files are not Python as
people write it) is assigned to the training or the held-out side by a hash of its path relative
to the library root (:func:`is_held_out`: SHA-256, one file in :data:`HELD_OUT_EVERY`), so the split
is the same on any machine and any Python 3.11 patch release, and a file is never on both sides.

Two held-out domains, like the paper's HumanEval and MT-Bench:

* **code**: the held-out files with their docstrings removed (:func:`split_docstrings`);
* **prose**: the docstrings of the held-out files (English documentation).

The held-out text is committed (``sw_model/data/heldout_code.txt``, ``heldout_prose.txt``, at most
:data:`HELD_OUT_BYTES` bytes of each domain, plus the list of held-out files) because the
library's sources differ slightly between patch releases: evaluation must not depend on the
machine. :func:`build_heldout` regenerates them; a test checks they match this machine's library.
Tokens are bytes (vocabulary 256).
"""

import ast
import hashlib
import logging
import sysconfig
from pathlib import Path

import numpy as np

__all__ = ["VOCAB", "HELD_OUT_EVERY", "HELD_OUT_BYTES", "DATA_DIR", "stdlib_root", "corpus_files",
           "is_held_out", "split_docstrings", "training_bytes", "build_heldout", "heldout_text",
           "heldout_windows", "heldout_prompts", "unigram_logprobs", "DOMAINS"]

log = logging.getLogger(__name__)

VOCAB = 256
#: One file in this many is held out.
HELD_OUT_EVERY = 10
#: Bytes of held-out text committed per domain.
HELD_OUT_BYTES = 48 * 1024
DOMAINS = ("code", "prose")
DATA_DIR = Path(__file__).resolve().parent.parent / "data"
_SKIP_PARTS = {"site-packages", "test", "tests", "idle_test", "__pycache__"}


def stdlib_root():
    return Path(sysconfig.get_paths()["stdlib"])


def corpus_files(root=None):
    """Relative paths (POSIX strings, sorted) of the corpus's Python files under ``root``."""
    root = Path(root) if root is not None else stdlib_root()
    if not root.is_dir():
        raise FileNotFoundError(f"standard library directory {root} does not exist")
    out = []
    for path in root.rglob("*.py"):
        rel = path.relative_to(root)
        if _SKIP_PARTS.intersection(rel.parts[:-1]) or rel.name.startswith("test_"):
            continue
        out.append(rel.as_posix())
    return sorted(out)


def is_held_out(rel_path):
    """True for the held-out side of the split (by the SHA-256 of the relative path)."""
    digest = hashlib.sha256(rel_path.encode()).digest()
    return int.from_bytes(digest[:8], "little") % HELD_OUT_EVERY == 0


def split_docstrings(source):
    """``(code, prose)`` of one module's source: the source without its docstring lines, and the
    docstrings (dedented, separated by blank lines). A file that does not parse is all code."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return source, ""
    lines = source.splitlines(keepends=True)
    drop, docs = set(), []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                                 ast.AsyncFunctionDef)):
            continue
        body = node.body
        if (body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            first = body[0]
            drop.update(range(first.lineno - 1, first.end_lineno))
            docs.append(ast.get_docstring(node, clean=True) or "")
    code = "".join(l for i, l in enumerate(lines) if i not in drop)
    return code, "\n\n".join(d for d in docs if d.strip())


def _read(root, rel):
    return (Path(root) / rel).read_bytes().decode("utf-8", errors="replace")


def training_bytes(root=None):
    """The training stream: every non-held-out file, whole (code and its docstrings), as uint8,
    files separated by a NUL byte."""
    root = Path(root) if root is not None else stdlib_root()
    parts = []
    for rel in corpus_files(root):
        if not is_held_out(rel):
            parts.append((root / rel).read_bytes())
    return np.frombuffer(b"\0".join(parts), dtype=np.uint8)


def build_heldout(root=None, out_dir=None):
    """Write the held-out texts and the file list to ``out_dir`` (default: the package data);
    returns ``{domain: bytes}``. Each domain takes an equal share of :data:`HELD_OUT_BYTES` from
    the middle of every held-out file (code) or of its docstrings (prose)."""
    root = Path(root) if root is not None else stdlib_root()
    out_dir = Path(out_dir) if out_dir is not None else DATA_DIR
    held = [rel for rel in corpus_files(root) if is_held_out(rel)]
    code, prose = [], []
    for rel in held:
        c, p = split_docstrings(_read(root, rel))
        code.append(c)
        if p:
            prose.append(p)
    out_dir.mkdir(parents=True, exist_ok=True)
    texts = {}
    for domain, docs in (("code", code), ("prose", prose)):
        # The middle of every file (not the first files whole): all held-out modules are sampled.
        share = HELD_OUT_BYTES // len(docs) - 1
        chunks = []
        for doc in docs:
            data = doc.encode("utf-8")
            mid = max(0, len(data) // 2 - share // 2)
            chunks.append(data[mid:mid + share])
        data = b"\n".join(chunks)[:HELD_OUT_BYTES]
        texts[domain] = data
        (out_dir / f"heldout_{domain}.txt").write_bytes(data)
    (out_dir / "heldout_files.txt").write_text("\n".join(held) + "\n")
    return texts


def heldout_text(domain):
    """The committed held-out bytes of ``domain`` ("code" or "prose") as uint8."""
    if domain not in DOMAINS:
        raise ValueError(f"held-out domain must be one of {', '.join(DOMAINS)}, not {domain!r}")
    return np.frombuffer((DATA_DIR / f"heldout_{domain}.txt").read_bytes(), dtype=np.uint8)


def heldout_windows(domain, count, length):
    """``count`` windows of ``length`` bytes, evenly spaced over the held-out text of ``domain``
    (deterministic): ``[count, length]`` int64."""
    data = heldout_text(domain)
    if count < 1 or length < 2 or count * length > len(data):
        raise ValueError(f"{count} windows of {length} bytes do not fit the {len(data)} held-out "
                         f"bytes of {domain}")
    starts = np.linspace(0, len(data) - length, count).astype(np.int64)
    return np.stack([data[s:s + length] for s in starts]).astype(np.int64)


def heldout_prompts(rng, count, min_len, max_len):
    """``count`` prompts (int64 byte arrays) of ``min_len..max_len`` bytes at random offsets of
    the held-out text, alternately code and prose (the first one code)."""
    texts = [heldout_text(d) for d in DOMAINS]
    out = []
    for i in range(count):
        data = texts[i % len(texts)]
        n = int(rng.integers(min_len, max_len + 1))
        if n > len(data):
            raise ValueError(f"prompt length {n} exceeds the {len(data)} held-out bytes")
        start = int(rng.integers(0, len(data) - n + 1))
        out.append(data[start:start + n].astype(np.int64))
    return out


def unigram_logprobs(stream):
    """Log-probabilities of the byte unigram model of ``stream`` (add-one smoothing)."""
    counts = np.bincount(np.asarray(stream, dtype=np.int64), minlength=VOCAB) + 1.0
    return np.log(counts / counts.sum())
