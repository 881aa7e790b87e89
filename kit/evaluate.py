"""What quantization costs: perplexity, KL divergence and top-token agreement.

Taught in notebooks/03_quantization.ipynb. Perplexity is computed the way
llama.cpp's perplexity tool does it: the text is cut into windows of n_ctx
tokens, each window is read from scratch (with BOS first if the model wants
one), and only the second half of each window is scored, so every scored
token has at least n_ctx/2 tokens of context. KL divergence and top-token
agreement compare each model with a reference on the same scored tokens.

>>> rows = evaluate(["smollm2:135m-q8_0", "smollm2:135m-q2_k"],
...                 reference="smollm2:135m", max_windows=2)
>>> print(format_table(rows))
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from kit.errors import (BadParameter, EvalTextTooShort, LoadFailed, NothingToEvaluate,
                        OtherTokens)
from kit.util import human_size, text_table
from kit.engines import load
from kit.engines.llamacpp import import_llama_cpp, vocab_of
from kit.modelfile import read_facts
from kit.models.registry import installed, resolve
from kit.settings import get_settings

DEFAULT_CTX = 512
EVAL_TEXT = Path(__file__).parent / "data" / "eval_text.txt"


def _name(model):
    """A kit name, or a path given as str or Path (None: the default model)."""
    return os.fspath(model) if isinstance(model, os.PathLike) else model


def load_eval_text(path=None) -> str:
    """The bundled evaluation text (Shakespeare's Sonnets I-XXIV), or a file."""
    return Path(path or EVAL_TEXT).read_text(encoding="utf-8")


@dataclass
class EvalResult:
    """One model's figures on the evaluation text."""

    name: str
    quantization: str
    size: int
    bits_per_weight: float
    perplexity: float
    kl_divergence: float  # mean over scored tokens, in nats; 0 for the reference
    top_token_agreement: float  # share of scored tokens with the same top token
    is_reference: bool
    reference: str
    n_ctx: int
    n_windows: int
    n_scored: int
    seconds: float

    def row(self) -> dict:
        d = asdict(self)
        d["size_mb"] = d.pop("size") / 1e6
        return d

    def line(self) -> str:
        if self.is_reference:
            extra = "the reference"
        else:
            extra = (f"KL {self.kl_divergence:.4f}, same top token "
                     f"{100 * self.top_token_agreement:.1f}%")
        return (f"{self.name}: perplexity {self.perplexity:.3f}, {extra} "
                f"({self.n_scored} tokens scored, {self.seconds:.1f} s)")


class Scorer:
    """A model loaded to read every position's logits (llama.cpp, CPU)."""

    def __init__(self, model, n_ctx: int = DEFAULT_CTX, threads: int | None = None):
        llama_cpp = import_llama_cpp()
        self.ref = resolve(_name(model))
        self.facts = read_facts(self.ref.path)  # validated before native code
        threads = threads or get_settings().n_threads
        try:
            self.llm = llama_cpp.Llama(
                model_path=str(self.ref.path), n_ctx=n_ctx, n_batch=n_ctx,
                n_ubatch=n_ctx, n_threads=threads, n_threads_batch=threads,
                logits_all=True, verbose=False)
        except (ValueError, RuntimeError) as exc:
            raise LoadFailed(path=self.ref.path, problem=exc) from exc
        self.n_ctx = n_ctx
        self.add_bos = bool(llama_cpp.llama_vocab_get_add_bos(vocab_of(self.llm)))
        self.bos = self.llm.token_bos()

    def tokenize(self, text: str) -> list[int]:
        """Tokens of the whole text, as llama.cpp's perplexity tool makes them."""
        return self.llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)

    def windows(self, tokens: list[int], max_windows: int | None = None):
        """Whole windows of n_ctx tokens; BOS replaces the first token of each."""
        if max_windows is not None and (not isinstance(max_windows, int)
                                        or max_windows < 1):
            raise BadParameter("max_windows", max_windows, "1 or more, or None (all)")
        n = len(tokens) // self.n_ctx
        if n < 1:
            raise EvalTextTooShort(len(tokens), self.n_ctx)
        n = min(n, max_windows) if max_windows else n
        out = []
        for i in range(n):
            w = list(tokens[i * self.n_ctx:(i + 1) * self.n_ctx])
            if self.add_bos:
                w[0] = self.bos
            out.append(w)
        return out

    def logits(self, window: list[int]):
        """(n_ctx, vocabulary) float32: the scores after each position."""
        self.llm.reset()  # a fresh start: no cache from the previous window
        self.llm.eval(window)
        return self.llm.scores[:len(window)]

    def close(self) -> None:
        self.llm.close()


def log_softmax(logits):
    """Log-probabilities from logits, row by row (float32, stable)."""
    import numpy as np

    x = np.asarray(logits, dtype=np.float32)
    m = x.max(axis=1, keepdims=True)
    lse = np.log(np.exp(x - m).sum(axis=1, dtype=np.float64, keepdims=True))
    return x - (m + lse.astype(np.float32))


def scored(n_ctx: int) -> slice:
    """Positions scored in each window: the second half (as llama.cpp)."""
    return slice(n_ctx // 2, n_ctx - 1)  # position j predicts token j + 1


def _pick_reference(names, facts) -> int:
    """Most bits per weight (the first listed wins a tie), never a copy
    quantized from another model in the list: re-quantizing cannot add
    precision, so the original is the fair reference (notebook 03)."""
    known = installed()
    made_from_another = {i for i, n in enumerate(names)
                         if isinstance(n, str) and known.get(n, {}).get("base") in names}
    candidates = [i for i in range(len(facts)) if i not in made_from_another]
    return max(candidates or range(len(facts)),
               key=lambda i: (facts[i].bits_per_weight, -i))


def _score(sc: Scorer, wins, ref_lp, ref_top, keep: bool) -> tuple:
    """Sums over the scored positions of every window: -log p(next token),
    KL(reference || model) and top-token matches. With keep=True this model
    is the reference: its log-probabilities go into ref_lp and ref_top."""
    import numpy as np

    sl = scored(sc.n_ctx)
    rows = np.arange(sl.stop - sl.start)
    nll = kl = same = 0.0
    for k, w in enumerate(wins):
        lp = log_softmax(sc.logits(w)[sl])
        nll -= float(lp[rows, w[sl.start + 1:sl.stop + 1]].sum(dtype=np.float64))
        top = lp.argmax(axis=1)
        if keep:
            ref_lp[k], ref_top[k] = lp, top
            continue
        r = ref_lp[k]
        kl += float((np.exp(r) * (r - lp)).sum(dtype=np.float64))
        same += int((top == ref_top[k]).sum())
    return nll, kl, same


def _result(sc: Scorer, reference: str, sums, n_windows: int, t0: float,
            is_reference: bool) -> EvalResult:
    import math

    nll, kl, same = sums
    n = n_windows * (scored(sc.n_ctx).stop - scored(sc.n_ctx).start)
    return EvalResult(
        sc.ref.name, sc.facts.file_type or sc.facts.quantization, sc.facts.file_size,
        sc.facts.bits_per_weight, math.exp(nll / n),
        0.0 if is_reference else max(kl / n, 0.0),
        1.0 if is_reference else same / n, is_reference, reference, sc.n_ctx,
        n_windows, n, time.perf_counter() - t0)


def evaluate(models, reference=None, *, text: str | None = None,
             n_ctx: int = DEFAULT_CTX, max_windows: int | None = None,
             threads: int | None = None, quiet: bool = False) -> list[EvalResult]:
    """Perplexity of each model, plus KL divergence and agreement with a reference.

    Without `reference`, the model with the most bits per weight is the
    reference, leaving out copies quantized from another listed model. The reference comes first in the results; every model named
    in `models` gets its own pass (name the reference there too and its KL
    against itself shows 0). One model is loaded at a time; the reference's
    log-probabilities wait in a temporary file (about 50 MB per window).
    """
    import tempfile

    import numpy as np

    if models is None or isinstance(models, (str, Path)):
        models = [models]
    models = list(models)
    if not models and reference is None:
        raise NothingToEvaluate()
    if not isinstance(n_ctx, int) or n_ctx < 8:
        raise BadParameter("n_ctx", n_ctx, "a whole number of tokens, at least 8")
    if reference is None:
        names = [_name(m) for m in models]
        i = _pick_reference(names, [read_facts(resolve(n).path) for n in names])
        reference, models = models[i], models[:i] + models[i + 1:]
    text = load_eval_text() if text is None else text
    say = (lambda *a: None) if quiet else print
    with tempfile.TemporaryDirectory(prefix="kit-eval-",
                                     ignore_cleanup_errors=True) as tmp:
        t0 = time.perf_counter()
        sc = Scorer(reference, n_ctx, threads)
        try:
            tokens = sc.tokenize(text)
            wins = sc.windows(tokens, max_windows)
            shape = (len(wins), scored(n_ctx).stop - scored(n_ctx).start)
            ref_lp = np.lib.format.open_memmap(
                Path(tmp) / "reference.npy", mode="w+", dtype=np.float32,
                shape=(*shape, sc.llm.n_vocab()))
            ref_top = np.empty(shape, dtype=np.int64)
            sums = _score(sc, wins, ref_lp, ref_top, keep=True)
        finally:
            sc.close()
        ref_name = sc.ref.name
        results = [_result(sc, ref_name, sums, len(wins), t0, True)]
        say(results[-1].line())
        for m in models:
            t0 = time.perf_counter()
            sc = Scorer(m, n_ctx, threads)
            try:
                if sc.tokenize(text) != tokens:
                    raise OtherTokens(name=sc.ref.name, reference=ref_name)
                sums = _score(sc, wins, ref_lp, ref_top, keep=False)
            finally:
                sc.close()
            results.append(_result(sc, ref_name, sums, len(wins), t0, False))
            say(results[-1].line())
        del ref_lp  # close the memory map before its folder is removed
    return results


def perplexity(model=None, *, text: str | None = None, n_ctx: int = DEFAULT_CTX,
               max_windows: int | None = None, threads: int | None = None) -> float:
    """Perplexity of one model on the text (lower: the text surprises it less)."""
    return evaluate([model], text=text, n_ctx=n_ctx, max_windows=max_windows,
                    threads=threads, quiet=True)[0].perplexity


def passage_probs(model, text: str, n_ctx: int = 256) -> list:
    """Each token of `text` (after the first) with the probability the model
    gave it there: kit.probs.TokenProb, for kit.probs.to_html's colours."""
    import math

    from kit.probs import TokenProb, readable

    sc = Scorer(model, n_ctx=n_ctx)
    try:
        tokens = sc.tokenize(text)[:n_ctx]
        if len(tokens) < 2:
            raise EvalTextTooShort(len(tokens), 2)
        lp = log_softmax(sc.logits(tokens))
        out = []
        for i, t in enumerate(tokens[1:]):
            raw = sc.llm.detokenize([t])
            out.append(TokenProb(readable(raw), t, math.exp(float(lp[i, t])),
                                 float(lp[i, t]), raw))
        return out
    finally:
        sc.close()


def generation_speed(model, n_tokens: int = 32, n_ctx: int = DEFAULT_CTX,
                     prompt: str = "Once upon a time, in a small library,") -> float:
    """Tokens per second while generating (greedy, CPU), through kit.load."""

    eng = load(model, n_ctx=n_ctx, quiet=True)
    stream = eng.generate(prompt, max_tokens=n_tokens, temperature=0, seed=1)
    stream.text
    return stream.stats.gen_tps


def format_table(results) -> str:
    """A plain text table of evaluate()'s results."""
    rows = [{"model": r.name, "quant": r.quantization, "size": human_size(r.size),
             "bpw": f"{r.bits_per_weight:.2f}", "ppl": f"{r.perplexity:.3f}",
             "kl": "ref" if r.is_reference else f"{r.kl_divergence:.4f}",
             "same top": f"{100 * r.top_token_agreement:.1f}%"} for r in results]
    lines = [text_table(rows, right=("size", "bpw", "ppl", "kl", "same top"))]
    r0 = results[0]
    lines.append(f"{r0.n_scored} tokens scored in {r0.n_windows} windows of "
                 f"{r0.n_ctx} tokens; KL and SAME TOP against {r0.reference}")
    return "\n".join(lines)
