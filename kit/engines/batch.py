"""Several answers from one llama.cpp context: batched decoding (notebook 07).

llama.cpp's context holds a KV cache for several sequences; one call to
`llama_decode` reads a batch whose tokens each name their sequence. One step
advances every running answer by a token.
A sequence joins at the next step and leaves when it ends; each has its own
sampler chain, seed and stop strings. A sequence slot keeps its KV cells after
an answer (a prompt cache per slot, as llama-server keeps one): the next
request goes to the free slot whose tokens share the longest beginning with its
prompt, and only the rest is read. Cells are reused only for the very same
tokens at the same positions, so no conversation can reach into another's.

What it gains depends on what limits the processor. Where a step waits on
memory (a large model, many cores, a GPU), eight answers cost little more
than one. Where the arithmetic is the limit (two cores), eight answers cost
nearly eight times one, and batching gains fairness instead: every answer
starts within a step or two rather than after everyone ahead of it.

>>> model = Batched(load("smollm2:135m"), n_seq=4)    # kit.engines.load
>>> model.chat(messages, temperature=0).text          # as model.chat would
>>> model.close()
"""
from __future__ import annotations

import queue
import threading
from collections import deque

from kit.engines.base import Clock, Sampling, Stream, token_loop
from kit.engines.llamacpp import common_prefix, import_llama_cpp, plan_reuse
from kit.engines.threads import ThreadGovernor
from kit.errors import EmptyPrompt, KitError, PromptTooLong

PENALTY_LAST_N = 64  # what llama-cpp-python's Llama uses (last_n_tokens_size)
_END = object()  # a sequence's last message to its reader


def sampler_chain(lib, s: Sampling, seed: int, n_vocab: int):
    """llama.cpp's sampler chain as llama-cpp-python's Llama builds it, so a
    batched answer equals an unbatched one for the same settings and seed."""
    chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
    add = lambda smpl: lib.llama_sampler_chain_add(chain, smpl)  # noqa: E731
    add(lib.llama_sampler_init_penalties(n_vocab, PENALTY_LAST_N, s.repeat_penalty, 0.0, 0.0))
    if s.temperature == 0:
        add(lib.llama_sampler_init_greedy())
    else:
        add(lib.llama_sampler_init_top_k(s.top_k))
        add(lib.llama_sampler_init_typical(1.0, 1))
        add(lib.llama_sampler_init_top_p(s.top_p, 1))
        add(lib.llama_sampler_init_min_p(s.min_p, 1))
        add(lib.llama_sampler_init_temp(s.temperature))
        add(lib.llama_sampler_init_dist(seed))
    return chain


class Sequence:
    """One answer in the batch: its prompt, sampler and the tokens it got."""

    def __init__(self, tokens, sampling: Sampling, seed: int, stream: Stream):
        self.prompt, self.s, self.seed, self.stream = list(tokens), sampling, seed, stream
        self.out: queue.Queue = queue.Queue()  # token ids, then _END or an error
        self.left = threading.Event()  # the reader stopped (stop string, closed)
        self.seq_id = -1
        self.fed = 0  # prompt tokens already decoded
        self.pos = 0
        self.sampled = 0
        self.cached = 0  # prompt tokens found in the slot's cells
        self.exact = sampling.temperature == 0 or sampling.seed is not None
        self.exact_upto = 0  # leading cells made as a fresh start makes them
        self.history: list[int] = []  # every token decoded into the slot
        self.chain = None
        self.last = None  # the token to decode next (after the prompt)

    @property
    def gone(self) -> bool:
        return self.left.is_set() or self.stream.cancelled


class BatchRunner:
    """One llama.cpp context with `n_seq` sequences, decoded by one thread."""

    def __init__(self, engine, n_seq: int, n_ctx_seq: int, n_batch: int = 512):
        lib = self.lib = import_llama_cpp()
        self.engine, self.n_seq, self.n_ctx_seq = engine, n_seq, n_ctx_seq
        self.n_batch = max(n_batch, n_seq)
        params = lib.llama_context_default_params()
        src = engine.llm.context_params  # same settings as the unbatched context
        for name in ("n_threads", "n_threads_batch", "flash_attn_type", "type_k",
                     "type_v", "offload_kqv", "rope_freq_base", "rope_freq_scale"):
            setattr(params, name, getattr(src, name))
        params.n_ctx = n_ctx_seq * n_seq
        params.n_batch, params.n_ubatch = self.n_batch, min(self.n_batch, src.n_ubatch)
        params.n_seq_max = n_seq
        params.kv_unified = False  # each sequence its own cells, as when alone
        params.no_perf = True
        self.ctx = lib.llama_init_from_model(engine.llm.model, params)
        if not self.ctx:
            raise KitError(f"llama.cpp could not make a context for {n_seq} "
                           f"sequences of {n_ctx_seq} tokens: serve fewer at once "
                           "(kit serve --parallel) or a smaller context.")
        self.mem = lib.llama_get_memory(self.ctx)
        self.governor = None  # as the engine's: fewer threads beside busy programs
        if getattr(engine, "governor", None) is not None:
            self.governor = ThreadGovernor(
                lambda n: lib.llama_set_n_threads(self.ctx, n, n), most=engine.n_threads)
        self.batch = lib.llama_batch_init(self.n_batch, 0, 1)
        self.n_vocab = lib.llama_vocab_n_tokens(engine.vocab)
        self.free_ids = deque(range(n_seq))
        self.kept: dict[int, list[int]] = {}  # a slot's tokens still in its cells
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self.cond = threading.Condition()
        self.closed = False
        self.steps = 0
        self.thread = threading.Thread(target=self._loop, daemon=True,
                                       name=f"kit-batch-{engine.name}")
        self.thread.start()

    # -- from readers' threads ----------------------------------------------
    def submit(self, seq: Sequence) -> None:
        with self.cond:
            if self.closed:
                raise KitError("This model was unloaded while the answer waited: ask again.")
            self.waiting.append(seq)
            self.cond.notify()

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify()
        self.thread.join(timeout=30)
        if not self.thread.is_alive():
            self.lib.llama_batch_free(self.batch)
            self.lib.llama_free(self.ctx)

    # -- the decoding thread --------------------------------------------------
    def _admit(self) -> None:
        lib = self.lib
        while self.waiting and self.free_ids:
            seq = self.waiting.popleft()
            if seq.gone:
                seq.out.put(_END)
                continue
            seq.seq_id = self._slot_for(seq.prompt)
            keep = self._reuse(seq, *self.kept.pop(seq.seq_id, ([], 0)))
            lib.llama_memory_seq_rm(self.mem, seq.seq_id, keep, -1)
            seq.fed = seq.pos = seq.cached = keep
            seq.history = list(seq.prompt[:keep])
            seq.chain = sampler_chain(lib, seq.s, seq.seed, self.n_vocab)
            self.running.append(seq)

    def _reuse(self, seq: Sequence, held: list[int], exact_upto: int) -> int:
        """How much of the slot's cells `seq` keeps (as the engine's _prefill:
        a repeatable answer keeps only prompt work done from a fresh start, to
        a chunk boundary, so it is the answer it would be without the cache)."""
        n = len(seq.prompt)
        same = common_prefix(held, seq.prompt[:n - 1])  # the last token: read anew
        # a fresh prompt is read in one step with others: never its last token alone
        keep, seq.exact_upto = plan_reuse(same, exact_upto, n, seq.exact, min_left=2)
        return keep

    def _slot_for(self, prompt: list[int]) -> int:
        """The free slot holding the longest beginning of `prompt` (the one
        free longest if none does)."""
        held = lambda i: self.kept.get(i, ((), 0))[0]  # noqa: E731
        best = max(self.free_ids, key=lambda i: common_prefix(held(i), prompt))
        if not common_prefix(held(best), prompt):
            best = self.free_ids[0]
        self.free_ids.remove(best)
        return best

    def _leave(self, seq: Sequence, last=_END) -> None:
        self.kept[seq.seq_id] = (seq.history, seq.exact_upto)  # cells kept for the next
        self.lib.llama_sampler_free(seq.chain)
        self.running.remove(seq)
        self.free_ids.append(seq.seq_id)
        seq.out.put(last)

    def _loop(self) -> None:
        while True:
            with self.cond:
                while not self.closed and not self.waiting and not self.running:
                    self.cond.wait()
                if self.closed:
                    self._fail(KitError("The model was unloaded: ask again."))
                    return
            try:
                with self.cond:
                    self._admit()
                for seq in [s for s in self.running if s.gone]:
                    self._leave(seq)
                if self.running:
                    self._step()
            except Exception as exc:  # every reader hears of it, none waits on
                with self.cond:
                    self._fail(exc)

    def _fail(self, exc: Exception) -> None:
        for seq in list(self.running):
            self._leave(seq, exc)
        while self.waiting:
            self.waiting.popleft().out.put(exc)

    def _step(self) -> None:
        """Decode one batch: every answering sequence's last token, then as
        much waiting prompt as fits; sample where a sequence needs a token."""
        b, lib = self.batch, self.lib
        n, wants = 0, []  # wants: (sequence, its index in the batch)

        def add(seq, token, logits):
            nonlocal n
            b.token[n], b.pos[n], b.n_seq_id[n] = token, seq.pos, 1
            b.seq_id[n][0], b.logits[n] = seq.seq_id, logits
            seq.pos += 1
            seq.history.append(token)
            if logits:
                wants.append((seq, n))
            n += 1

        for seq in self.running:
            if seq.last is not None:
                add(seq, seq.last, True)
        for seq in self.running:  # prompts, first come first served
            while seq.fed < len(seq.prompt) and n < self.n_batch:
                seq.fed += 1
                add(seq, seq.prompt[seq.fed - 1], seq.fed == len(seq.prompt))
        b.n_tokens = n
        if self.governor is not None:
            self.governor.adjust()
        rc = lib.llama_decode(self.ctx, b)
        if rc != 0:
            for seq in self.running:  # what the cells hold is unknown now
                seq.history.clear()
                seq.exact_upto = 0
                lib.llama_memory_seq_rm(self.mem, seq.seq_id, -1, -1)
            raise KitError(f"llama.cpp could not decode a batch of {n} tokens "
                           f"(code {rc}): serve fewer at once or a smaller context.")
        self.steps += 1
        for seq, i in wants:
            token = lib.llama_sampler_sample(seq.chain, self.ctx, i)
            seq.sampled += 1
            seq.out.put(token)
            seq.last = token
            if (lib.llama_vocab_is_eog(self.engine.vocab, token)
                    or seq.sampled >= seq.s.max_tokens
                    or len(seq.prompt) + seq.sampled >= self.n_ctx_seq):
                self._leave(seq)


class Batched:
    """A llama.cpp model answering up to `n_seq` requests at once.

    chat() and generate() join the shared batch; what batching does not cover
    (JSON schemas, tools, grammars, logprobs) runs unbatched on the model's
    own context, one at a time. Everything else is the model's own.
    """

    def __init__(self, engine, n_seq: int, n_ctx_seq: int | None = None):
        self.engine = engine
        self.runner = BatchRunner(engine, n_seq, n_ctx_seq or engine.n_ctx)
        self.alone = threading.Lock()  # the model's own context: one at a time

    def __getattr__(self, name):
        return getattr(self.engine, name)

    @property
    def n_seq(self) -> int:
        return self.runner.n_seq

    def close(self) -> None:
        self.runner.close()

    def chat(self, messages, sampling=None, json_schema=None, tools=None,
             tool_choice="auto", **kw):
        if json_schema is not None or tools is not None or _wants_probs(kw):
            return self._alone(self.engine.chat(messages, sampling, json_schema=json_schema,
                                                tools=tools, tool_choice=tool_choice, **kw))
        self.engine._need_chat()
        return self._batched(self.engine.chat_tokens(messages), Sampling.make(sampling, **kw),
                             None if self.engine.chat_template else
                             "This model file has no chat template; used a generic one.")

    def generate(self, prompt, sampling=None, json_schema=None, **kw):
        if json_schema is not None or _wants_probs(kw):
            return self._alone(self.engine.generate(prompt, sampling,
                                                    json_schema=json_schema, **kw))
        self.engine._need_chat()
        return self._batched(self.engine.tokenize(prompt), Sampling.make(sampling, **kw))

    def complete(self, prompt, sampling=None, grammar=None, **kw):
        return self._alone(self.engine.complete(prompt, sampling, grammar=grammar, **kw))

    def _alone(self, stream: Stream) -> Stream:
        inner = stream._pieces

        def pieces(outer):
            with self.alone:
                yield from inner(outer)
        stream._pieces = pieces
        return stream

    def _batched(self, tokens, s: Sampling, notice: str | None = None) -> Stream:
        eng, runner = self.engine, self.runner
        if not tokens:
            raise EmptyPrompt()
        if len(tokens) >= runner.n_ctx_seq:
            raise PromptTooLong(len(tokens), runner.n_ctx_seq)
        seed = s.seed if s.seed is not None else eng.seed
        seed = seed if seed is not None else eng._random_seed

        def run(stream):
            st = stream.stats
            st.prompt_tokens = len(tokens)
            if notice:
                st.notices.append(notice)
            seq = Sequence(tokens, s, seed, stream)
            seq.exact = seq.exact or eng.seed is not None  # the model's own seed
            clock = Clock()
            runner.submit(seq)

            def ids():
                while True:
                    item = seq.out.get()
                    if item is _END:
                        return
                    if isinstance(item, BaseException):
                        raise item
                    yield item
            try:
                reason = yield from token_loop(
                    ids(), s, stream, clock, piece=lambda t: eng.llm.detokenize([t]),
                    is_end=lambda t: import_llama_cpp().llama_vocab_is_eog(eng.vocab, t),
                    n_prompt=len(tokens), n_ctx=runner.n_ctx_seq)
            finally:
                seq.left.set()
                with runner.cond:
                    runner.cond.notify()
            st.prompt_cached = seq.cached
            clock.finish(st, reason, len(tokens) - seq.cached, runner.n_ctx_seq)

        return Stream(run)


def _wants_probs(kw: dict) -> bool:
    return bool(kw.get("logprobs") or kw.get("top_logprobs"))
