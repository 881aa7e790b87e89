"""The ctransformers engine: a second, independent way to run GGUF models.

ctransformers 0.2.27 (2023) comes as a prebuilt wheel with CPU and CUDA
libraries, so nothing compiles. Its llama.cpp is from 2023, so it runs only
what that version knew: llama (and falcon) models, older number types, and
vocabularies it can read. `can_run(facts)` says so before anything loads,
and a first load of each file happens in a separate process, so a file that
crashes its native code cannot take the Jupyter kernel down with it.

The starter model needs a converted copy (kit.engines.ct_convert; same weights and
tokenizer): `kit.load("smollm2:135m-ct", engine="ctransformers")`.
min_p is not known to ctransformers: it is ignored, and the figures say so.
"""
from __future__ import annotations

import subprocess
import sys
import time

from kit.engines.base import (Clock, Engine, Sampling, Stream, refuse_logprobs,
                              token_loop)
from kit.engines.guards import rendering_chat, special_spans
from kit.errors import EngineCannotRun, EngineMissing, KitError, PromptTooLong

ARCHITECTURES = ("llama", "falcon")  # what its GGUF loader can build
# Number types that existed in 2023 (newer ones, e.g. IQ2_XS or BF16, do not).
TENSOR_TYPES = ("F32", "F16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q8_1",
                "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K")
FIX_HINT = "kit.engines.ct_convert.to_ctransformers() makes a copy it can run"
_PROBED: dict[tuple, str] = {}  # (path, size, mtime) -> "" (fine) or a reason


def import_ctransformers():
    try:
        import ctransformers
    except Exception as exc:  # ImportError, or OSError from its library
        raise EngineMissing("ctransformers", f"it failed with: {exc}; it also "
                            "needs py-cpuinfo") from exc
    return ctransformers


def can_run(facts) -> tuple[bool, str]:
    """(True, '') if ctransformers can run this GGUF file, else (False, why).

    >>> can_run(read_facts(starter))
    (False, "ctransformers cannot run ...: the file has no tokenizer scores ...")
    """
    from kit.modelfile import scan

    def no(why):
        return False, (f"ctransformers cannot run {facts.name}: {why}. "
                       "Use the llama.cpp engine (engine='llamacpp'), which can")

    if facts.architecture not in ARCHITECTURES:
        return no(f"its architecture {facts.architecture!r} is newer than its "
                  f"llama.cpp, which knows {', '.join(ARCHITECTURES)}")
    odd = sorted({r.type for r in facts.quant_summary} - set(TENSOR_TYPES))
    if odd:
        return no(f"it holds {', '.join(odd)} numbers, a type invented after 2023")
    found = scan(facts.path)
    md = found.metadata
    vocab = md.get("tokenizer.ggml.model")
    if vocab not in ("llama", "gpt2"):
        return no(f"its tokenizer type {vocab!r} is unknown to it")
    if "tokenizer.ggml.scores" not in md:
        return no("the file has no tokenizer scores, which its llama.cpp needs "
                  f"({FIX_HINT})")
    if vocab == "gpt2" and "\n" not in (md.get("tokenizer.ggml.tokens") or []):
        return no("its GPT-2 style vocabulary (byte-level text) crashes that "
                  f"llama.cpp ({FIX_HINT})")
    if facts.architecture == "llama" and not any(
            t.name == "output.weight" for t in found.tensors):
        return no(f"it has no output.weight tensor, which its llama.cpp needs ({FIX_HINT})")
    return True, ""


_PROBE = """
import sys
from ctransformers import AutoModelForCausalLM
AutoModelForCausalLM.from_pretrained(sys.argv[1], model_type=sys.argv[2],
                                     context_length=64, threads=1)
"""


def probe(path, model_type: str, timeout: float = 120.0) -> None:
    """Load the file once in a child process; raise if that fails or crashes."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _PROBED:
        try:
            done = subprocess.run([sys.executable, "-c", _PROBE, str(path), model_type],
                                  capture_output=True, text=True, timeout=timeout)
            ok = done.returncode == 0
            why = "" if ok else (f"exit code {done.returncode}" + (
                " (it crashed)" if done.returncode < 0 else "")
                + f": {(done.stderr or '').strip().splitlines()[-1:]}")
        except subprocess.TimeoutExpired:
            why = f"it did not finish loading within {timeout:g} s"
        _PROBED[key] = why
    if _PROBED[key]:
        raise KitError(f"ctransformers could not load {path} in a test run "
                       f"({_PROBED[key]}). Use the llama.cpp engine "
                       "(engine='llamacpp') for this file.")


class CTransformersEngine(Engine):
    engine_name = "ctransformers"
    capabilities = {"chat_template": True, "gpu_offload": True, "streaming": True}

    def __init__(self, name, path, facts, n_ctx=2048, n_threads=2, n_gpu_layers=0,
                 seed=None, check=True):
        from kit.engines.bpe import BPETokenizer
        from kit.modelfile import scan

        super().__init__(name, path, n_ctx)
        md = scan(path).metadata
        if check is True:  # load() has checked already (check="probe")
            ok, why = can_run(facts)
            if not ok:
                raise EngineCannotRun(why)
        ct = import_ctransformers()
        self.facts, self.n_threads, self.n_gpu_layers = facts, n_threads, n_gpu_layers
        self.seed = seed
        self.version = _version()
        self.model_type = facts.architecture
        if check:
            probe(path, self.model_type)
        t0 = time.perf_counter()
        try:
            self.llm = ct.AutoModelForCausalLM.from_pretrained(
                str(path), model_type=self.model_type, context_length=n_ctx,
                threads=n_threads, gpu_layers=n_gpu_layers, batch_size=64)
        except (RuntimeError, OSError, ValueError) as exc:
            raise KitError(f"ctransformers could not load {path}: {exc}. Use the "
                           "llama.cpp engine (engine='llamacpp').") from exc
        self.load_s = time.perf_counter() - t0
        self.on_gpu = bool(n_gpu_layers)
        self.chat_template = md.get("tokenizer.chat_template") or None
        self.bpe = (BPETokenizer.from_metadata(md)
                    if md.get("tokenizer.ggml.model") == "gpt2" else None)
        self.eos = md.get("tokenizer.ggml.eos_token_id", self.llm.eos_token_id)
        self.bos = md.get("tokenizer.ggml.bos_token_id")
        types = md.get("tokenizer.ggml.token_type") or []
        self.control = {i for i, k in enumerate(types) if k == 3}
        self.add_bos = md.get("tokenizer.ggml.add_bos_token", self.bpe is None)
        self._names = md.get("tokenizer.ggml.tokens") or []

    # -- tokens -----------------------------------------------------------
    def tokenize(self, text: str, special: bool = False) -> list[int]:
        if self.bpe is not None:
            ids = self.bpe.encode(text, special=special)
        else:
            ids = self.llm.tokenize(text, add_bos_token=False)
        return ([self.bos] if self.add_bos and self.bos is not None else []) + ids

    def detokenize(self, tokens) -> str:
        if self.bpe is not None:
            return self.bpe.decode(tokens)
        return self.llm.detokenize(list(tokens))

    def _piece(self, token: int) -> bytes:
        if self.bpe is not None:
            return self.bpe.token_bytes(token)
        return self.llm.detokenize([token], decode=False)

    # -- chat template (ctransformers has none: the kit renders the file's) --
    def format_chat(self, messages: list[dict]) -> str:
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        from kit.engines.llamacpp import FALLBACK_TEMPLATE

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        names = self._names

        def name(i):
            return names[i] if i is not None and 0 <= i < len(names) else ""

        with rendering_chat(self.name):  # bounded in time, errors explained
            return env.from_string(self.chat_template or FALLBACK_TEMPLATE).render(
                messages=messages, add_generation_prompt=True,
                bos_token=name(self.bos), eos_token=name(self.eos))

    def chat_tokens(self, messages: list[dict]) -> list[int]:
        """The token ids the model reads; control-token text in messages stays text."""
        text = self.format_chat(messages)
        specials = {self._names[i] for i in self.control if i < len(self._names)}
        spans = special_spans(text, messages, specials) if self.bpe else []
        if not spans:
            tokens = self.tokenize(text, special=True)
        else:
            tokens, pos = self.tokenize("", special=True), 0  # BOS, if it adds one
            for start, end in spans:
                tokens += self.bpe.encode(text[pos:start], special=True)
                tokens += self.bpe.encode(text[start:end], special=False)
                pos = end
            tokens += self.bpe.encode(text[pos:], special=True)
        if self.bos is not None and tokens[1:2] == [self.bos] and tokens[0] == self.bos:
            tokens = tokens[1:]  # the template wrote BOS already
        return tokens

    # -- generation -------------------------------------------------------
    def generate(self, prompt, sampling=None, **kw) -> Stream:
        refuse_logprobs(self, kw)
        s = Sampling.make(sampling, **kw)
        return Stream(lambda stream: self._run(self.tokenize(prompt), s, stream))

    def chat(self, messages, sampling=None, tools=None, tool_choice="auto",
             **kw) -> Stream:
        if tools is not None:  # tool calling: kit.tools (notebook 09) says what can
            from kit.engines.tool_calls import tool_chat

            return tool_chat(self, messages, tools, tool_choice, sampling, **kw)
        refuse_logprobs(self, kw)
        s = Sampling.make(sampling, **kw)
        tokens = self.chat_tokens(messages)

        def run(stream):
            if not self.chat_template:
                stream.stats.notices.append(
                    "This model file has no chat template; used a generic one.")
            yield from self._run(tokens, s, stream)

        return Stream(run)

    def _run(self, tokens: list[int], s: Sampling, stream: Stream):
        llm, st = self.llm, stream.stats
        n_prompt = len(tokens)
        if n_prompt >= self.n_ctx:
            raise PromptTooLong(n_prompt, self.n_ctx)
        st.prompt_tokens = n_prompt
        if s.min_p:
            st.notices.append(f"ctransformers has no min_p: min_p={s.min_p} ignored.")
        seed = s.seed if s.seed is not None else (self.seed if self.seed is not None else -1)
        # temperature 0 means "always the likeliest token": top_k=1 says that
        opts = dict(top_k=1 if s.temperature == 0 else s.top_k, top_p=s.top_p,
                    temperature=s.temperature or 1.0, repetition_penalty=s.repeat_penalty,
                    last_n_tokens=64, seed=seed)
        clock = Clock()
        todo = llm.prepare_inputs_for_generation(tokens, reset=True)
        st.prompt_cached = n_prompt - len(todo)
        llm.eval(todo, threads=self.n_threads)

        def sampled():  # sample, then (if asked for more) read the token in
            while True:
                token = llm.sample(**opts)
                yield token
                llm.eval([token], threads=self.n_threads)

        def is_end(token):
            return token == self.eos or token in self.control or llm.is_eos_token(token)

        reason = yield from token_loop(sampled(), s, stream, clock, piece=self._piece,
                                       is_end=is_end, n_prompt=n_prompt, n_ctx=self.n_ctx)
        clock.finish(st, reason, len(todo), self.n_ctx)

    def describe(self) -> str:
        where = f"GPU ({self.n_gpu_layers} layers)" if self.on_gpu else "CPU"
        threads = "1 thread" if self.n_threads == 1 else f"{self.n_threads} threads"
        return f"ctransformers {self.version}, {where}, {threads}, context {self.n_ctx}"


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("ctransformers")
    except metadata.PackageNotFoundError:
        return "?"
