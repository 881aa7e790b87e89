"""The llama.cpp engine, through llama-cpp-python: load, generate, chat.

>>> eng = LlamaCppEngine("smollm2:135m", path, n_ctx=2048, n_threads=2)
>>> print("".join(eng.generate("Paris is", max_tokens=10)))
"""
from __future__ import annotations

import time

from kit.engines.base import Clock, Engine, Sampling, Stream, token_loop
from kit.engines.guards import rendering_chat, special_spans, template_errors
from kit.engines.threads import ThreadGovernor, watched
from kit.errors import EmptyPrompt, EngineMissing, KitError, PromptTooLong

# The prompt is read in chunks starting at multiples of this many tokens
# (see LlamaCppEngine._prefill: why the same chunks make reuse exact).
CHUNK = 32

# Used when a model file has no chat template of its own; we say so.
FALLBACK_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}"
    "<|im_start|>assistant\n{% endif %}"
)


def import_llama_cpp():
    from kit.settings import apply_openmp_defaults

    apply_openmp_defaults()  # before llama.cpp's OpenMP library loads
    try:
        import llama_cpp
    except Exception as exc:  # ImportError, or OSError from the native library
        raise EngineMissing(
            "llama-cpp-python",
            f"it failed with: {exc}; it compiles llama.cpp, so it needs a C++ "
            "compiler, or use conda-forge's prebuilt package",
        ) from exc
    return llama_cpp


def gpu_offload_supported() -> bool:
    return bool(import_llama_cpp().llama_supports_gpu_offload())


def vocab_of(llm):
    """llama.cpp's vocabulary of a loaded Llama, for the llama_vocab_* calls."""
    return import_llama_cpp().llama_model_get_vocab(llm.model)


class LlamaCppEngine(Engine):
    engine_name = "llama.cpp"
    capabilities = {"chat_template": True, "gpu_offload": True, "streaming": True,
                    "tools": "template", "json_schema": True}

    def __init__(self, name, path, n_ctx=2048, n_threads=2, n_gpu_layers=0,
                 seed=None, use_mmap=True, embedding=False, adapt_threads=False,
                 cache=True):
        super().__init__(name, path, n_ctx)
        llama_cpp = import_llama_cpp()
        self.n_threads, self.n_gpu_layers = n_threads, n_gpu_layers
        self.embedding = embedding  # an embedding model: embed(), no chat
        self.seed = seed  # the default for calls that give none (None: random)
        self._random_seed = llama_cpp.LLAMA_DEFAULT_SEED  # llama.cpp: pick at random
        self.load_s = 0.0
        t0 = time.perf_counter()
        try:
            with template_errors(name):  # llama-cpp-python reads the template now
                self.llm = llama_cpp.Llama(
                    model_path=str(path), n_ctx=n_ctx, n_threads=n_threads,
                    n_threads_batch=n_threads, n_gpu_layers=n_gpu_layers,
                    seed=seed if seed is not None else llama_cpp.LLAMA_DEFAULT_SEED,
                    use_mmap=use_mmap, verbose=False, embedding=embedding,
                    # an encoder reads each text in one batch: batch = context
                    **(dict(n_batch=n_ctx, n_ubatch=n_ctx) if embedding else {}),
                )
        except (ValueError, RuntimeError) as exc:
            raise KitError(
                f"llama.cpp could not load {path}: {exc}. The file may be for a "
                "newer llama.cpp (upgrade: `pip install -U llama-cpp-python`) or "
                "damaged (download it again)."
            ) from exc
        self.load_s = time.perf_counter() - t0
        self.on_gpu = n_gpu_layers != 0 and bool(llama_cpp.llama_supports_gpu_offload())
        self.vocab = vocab_of(self.llm)
        # n_threads is the most; fewer while other programs keep cores busy
        self.governor = None
        if adapt_threads and n_threads > 1 and not self.on_gpu and not embedding:
            self.governor = ThreadGovernor(self._set_threads, most=n_threads)
        meta = self.llm.metadata or {}
        self.chat_template = meta.get("tokenizer.chat_template")
        self._formatter = None
        self._specials = None
        self.cache = cache  # reuse the work on a shared prompt beginning
        self._exact = 0  # leading positions read exactly as a fresh start reads them
        self._left_at = -1  # llm.n_tokens when this engine last used the context

    def _set_threads(self, n: int) -> None:
        import_llama_cpp().llama_set_n_threads(self.llm.ctx, n, n)

    # -- tokens -----------------------------------------------------------
    def tokenize(self, text: str, special: bool = False) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=True, special=special)

    def detokenize(self, tokens) -> str:
        return self.llm.detokenize(list(tokens)).decode("utf-8", errors="replace")

    # -- chat template ----------------------------------------------------
    def format_chat(self, messages: list[dict], tools: list[dict] | None = None) -> str:
        """The exact text the model sees for a conversation (its own template)."""
        with rendering_chat(self.name):  # bounded in time, errors explained
            if self._formatter is None:
                from llama_cpp.llama_chat_format import Jinja2ChatFormatter

                text = import_llama_cpp().llama_vocab_get_text
                eos, bos = self.llm.token_eos(), self.llm.token_bos()
                self._formatter = Jinja2ChatFormatter(
                    template=self.chat_template or FALLBACK_TEMPLATE,
                    eos_token=text(self.vocab, eos).decode("utf-8") if eos != -1 else "",
                    bos_token=text(self.vocab, bos).decode("utf-8") if bos != -1 else "",
                )
            return self._formatter(messages=messages, tools=tools).prompt

    def special_texts(self) -> set[str]:
        """The text of every control token ('<|im_start|>', ...), read once."""
        if self._specials is None:
            lib, vocab = import_llama_cpp(), self.vocab
            kinds = (lib.LLAMA_TOKEN_ATTR_CONTROL | lib.LLAMA_TOKEN_ATTR_USER_DEFINED
                     | lib.LLAMA_TOKEN_ATTR_UNKNOWN)  # what llama.cpp parses as special
            found = (lib.llama_vocab_get_text(vocab, i).decode("utf-8", "replace")
                     for i in range(lib.llama_vocab_n_tokens(vocab))
                     if lib.llama_vocab_get_attr(vocab, i) & kinds)
            self._specials = {t for t in found if t.strip()}
        return self._specials

    def chat_tokens(self, messages: list[dict]) -> list[int]:
        """The token ids the model reads for a conversation.

        The template's own markers become control tokens; the same text inside
        a message stays plain text, so a message cannot open a turn itself.
        """
        text = self.format_chat(messages)

        def ids(part: str, special: bool) -> list[int]:
            return self.llm.tokenize(part.encode("utf-8"), add_bos=False,
                                     special=special) if part else []

        tokens, pos = [], 0
        for start, end in special_spans(text, messages, self.special_texts()):
            tokens += ids(text[pos:start], True) + ids(text[start:end], False)
            pos = end
        tokens += ids(text[pos:], True)  # the template writes any BOS as text
        bos = self.llm.token_bos()
        adds_bos = import_llama_cpp().llama_vocab_get_add_bos(self.vocab)
        if bos != -1 and (not tokens or tokens[0] != bos) and adds_bos:
            tokens = [bos] + tokens
        return tokens

    # -- generation -------------------------------------------------------
    def generate(self, prompt, sampling=None, json_schema=None, **kw) -> Stream:
        """Continue `prompt`; json_schema (a dict, or "json") constrains the answer."""
        self._need_chat()
        probe = self._prober(kw)  # logprobs=True, top_logprobs=k: see kit.probs
        cache = kw.pop("cache", None)  # False: read the whole prompt afresh
        s = Sampling.make(sampling, **kw)
        grammar = self._grammar(json_schema)
        return Stream(lambda stream: self._run(self.tokenize(prompt), s, stream, grammar,
                                               probe, cache))

    def _grammar(self, json_schema):
        if json_schema is None:
            return None
        from kit.structured import check_grammar, to_grammar

        from llama_cpp import LlamaGrammar

        gbnf = check_grammar(self.llm, to_grammar(json_schema))  # bad schema: now
        return LlamaGrammar.from_string(gbnf, verbose=False)

    def chat(self, messages, sampling=None, json_schema=None, tools=None,
             tool_choice="auto", **kw) -> Stream:
        if tools is not None:  # tool calling: kit.tools (notebook 09)
            from kit.engines.tool_calls import tool_chat

            return tool_chat(self, messages, tools, tool_choice, sampling, **kw)
        self._need_chat()
        probe = self._prober(kw)
        cache = kw.pop("cache", None)
        s = Sampling.make(sampling, **kw)
        grammar = self._grammar(json_schema)
        tokens = self.chat_tokens(messages)

        def run(stream):
            if not self.chat_template:
                stream.stats.notices.append(
                    "This model file has no chat template; used a generic one.")
            yield from self._run(tokens, s, stream, grammar, probe, cache)

        return Stream(run)

    def complete(self, prompt, sampling=None, grammar: str | None = None, **kw) -> Stream:
        """Continue chat-formatted text (special tokens read as such) or token
        ids, under an optional GBNF grammar: kit.tools (tool calls, FIM)."""
        self._need_chat()
        cache = kw.pop("cache", None)
        s = Sampling.make(sampling, **kw)
        if grammar is not None:
            from kit.structured import check_grammar
            from llama_cpp import LlamaGrammar

            grammar = LlamaGrammar.from_string(check_grammar(self.llm, grammar),
                                               verbose=False)
        tokens = list(prompt) if not isinstance(prompt, str) else self.llm.tokenize(
            prompt.encode("utf-8"), add_bos=False, special=True)
        return Stream(lambda stream: self._run(tokens, s, stream, grammar, cache=cache))

    def _run(self, tokens: list[int], s: Sampling, stream: Stream, grammar=None,
             probe=None, cache=None):
        llm, st = self.llm, stream.stats
        n_prompt = len(tokens)
        if not n_prompt:  # llama.cpp needs at least one token to start from
            raise EmptyPrompt()
        if n_prompt >= self.n_ctx:
            raise PromptTooLong(n_prompt, self.n_ctx)
        st.prompt_tokens = n_prompt
        seed = s.seed if s.seed is not None else self.seed
        # A repeatable answer (temperature 0 or a seed) reuses only the work a
        # fresh start would do bit for bit, so it is the same answer either way;
        # cache="all" reuses everything shared regardless (as llama-server does).
        cache = self.cache if cache is None else cache
        exact = (s.temperature == 0 or seed is not None) and cache != "all"
        clock = Clock()  # the time to the first token counts the prompt's reading
        st.prompt_cached = self._prefill(tokens, bool(cache), exact)
        # An unset seed means a fresh random one each call, never the last one used.
        llm.set_seed(seed if seed is not None else self._random_seed)
        gen = llm.generate(tokens, top_k=s.top_k, top_p=s.top_p, min_p=s.min_p,
                           temp=s.temperature, repeat_penalty=s.repeat_penalty,
                           grammar=grammar)  # a JSON schema's: see kit.structured
        vocab, is_eog = self.vocab, import_llama_cpp().llama_vocab_is_eog
        tokens_in = watched(gen, self.governor)  # fewer threads beside a busy neighbour
        if probe is not None:  # each token's probabilities, before the next step
            stream.logprobs = []
            tokens_in = probe(gen, lambda t: is_eog(vocab, t), stream.logprobs)
        try:
            reason = yield from token_loop(
                tokens_in, s, stream, clock, piece=lambda t: llm.detokenize([t]),
                is_end=lambda t: is_eog(vocab, t), n_prompt=n_prompt, n_ctx=self.n_ctx)
        finally:
            gen.close()
            self._left_at = llm.n_tokens  # what the next call may find again
        clock.finish(st, reason, n_prompt - st.prompt_cached, self.n_ctx)

    # -- the prompt cache -------------------------------------------------------
    def _prefill(self, tokens: list[int], cache: bool, exact: bool) -> int:
        """Read the prompt into the context, reusing the previous call's work
        on a shared beginning; return how many tokens were reused.

        The prompt is read in chunks that start at multiples of CHUNK.
        llama.cpp's arithmetic for a token depends a little on the batch it is
        read in (one token alone is summed in another order than 32), so when
        `exact`, only work done in those same chunks is reused (`_exact`: that
        many leading positions), and the answer is bit for bit the one a fresh
        start gives. Otherwise everything shared is reused, the last answer's
        tokens too (as llama-server does). The last token is always read anew:
        its logits choose the first token of the answer.
        """
        llm, n = self.llm, len(tokens)
        if llm.n_tokens != self._left_at:  # the context was used elsewhere since
            self._exact, self._left_at = 0, -1
        same = min(common_prefix(llm.input_ids[: llm.n_tokens], tokens), n - 1) \
            if cache else 0
        keep, self._exact = plan_reuse(same, self._exact, n, exact)
        if keep == 0:
            llm.reset()
        llm.n_tokens = keep  # llama-cpp-python clears the KV cells after it
        pos = keep
        while pos < n:
            end = min(n, (pos // CHUNK + 1) * CHUNK)
            llm.eval(tokens[pos:end])
            pos = end
        self._left_at = llm.n_tokens
        return keep

    # -- probabilities (kit.probs, notebook 01) -----------------------------
    def token_bytes(self, token: int) -> bytes:
        """A token's bytes (control tokens such as <|im_end|> as their text)."""
        return self.llm.detokenize([token], special=True)

    def is_end_token(self, token: int) -> bool:
        """An end-of-generation token (<|im_end|>, <|endoftext|>...)."""
        return bool(import_llama_cpp().llama_vocab_is_eog(self.vocab, token))

    def _last_logits(self):
        import numpy as np

        lib, n = import_llama_cpp(), self.llm.n_vocab()
        return np.ctypeslib.as_array(lib.llama_get_logits_ith(self.llm.ctx, -1),
                                     shape=(n,))

    def logits(self, text_or_messages):
        """The model's raw scores for the next token (a copy; numpy float32).

        A string is continued as it is; a list of messages gets the model's
        chat template and the assistant's turn opened; a list of ids is read
        as given.
        """
        self._need_chat()
        x = text_or_messages
        tokens = (self.chat_tokens(x) if x and isinstance(x[0], dict) else list(x)) \
            if isinstance(x, list) else self.tokenize(x)
        if not tokens:
            raise EmptyPrompt()
        if len(tokens) >= self.n_ctx:
            raise PromptTooLong(len(tokens), self.n_ctx)
        self._prefill(tokens, self.cache, exact=True)  # the same figures either way
        return self._last_logits().copy()

    def next_tokens(self, text_or_messages, k: int = 10):
        """The k likeliest next tokens, likeliest first (kit.probs.Candidate)."""
        from kit.probs import candidates, check_k

        check_k(k, self.llm.n_vocab())  # before any work
        return candidates(self.logits(text_or_messages), k, self.token_bytes)

    def _prober(self, kw: dict):
        """From logprobs=/top_logprobs= (taken out of kw): a wrapper that records
        each token's probabilities while llama.cpp's logits still hold them."""
        want, top = kw.pop("logprobs", None), kw.pop("top_logprobs", None)
        if not want and not top:
            return None
        from kit.probs import Prober

        prober = Prober(top or 0, self.llm.n_vocab(), self.token_bytes)

        def probe(gen, is_end, out: list):
            for token in gen:
                if not is_end(token):
                    out.append(prober(self._last_logits(), token))
                yield token
        return probe

    def _need_chat(self) -> None:
        if self.embedding:
            from kit.errors import NotAChatModel

            raise NotAChatModel(self.name)

    def embed(self, texts, **options):
        """One normalised row per text (numpy float32); see kit.engines.embed."""
        if not self.embedding:
            return super().embed(texts, **options)  # a chat model: a clear error
        from kit.engines.embed import embed_llama

        return embed_llama(self, texts, **options)

    def describe(self) -> str:
        where = "GPU" if self.on_gpu else "CPU"
        threads = "1 thread" if self.n_threads == 1 else f"{self.n_threads} threads"
        if self.governor is not None:
            threads = f"up to {threads}"  # fewer while other programs are busy
        return f"{where}, {threads}, context {self.n_ctx}"


def plan_reuse(same: int, exact_upto: int, n: int, exact: bool,
               min_left: int = 1) -> tuple[int, int]:
    """For a prompt of n tokens whose first `same` are cached: how many to
    keep, and how many leading positions are then read exactly as a fresh
    start reads them (see LlamaCppEngine._prefill). A repeatable answer keeps
    only exact work to a chunk boundary, leaving at least `min_left` to read."""
    if exact:
        keep = min(same, exact_upto) // CHUNK * CHUNK
        if n - keep < min_left and keep >= CHUNK:
            keep -= CHUNK
    else:
        keep = same
    if keep <= exact_upto and keep % CHUNK == 0:  # the chunks go on as from fresh
        return keep, n // CHUNK * CHUNK
    return keep, min(keep, exact_upto) // CHUNK * CHUNK


def common_prefix(a, b) -> int:
    """How many leading items a and b share."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n
