"""llama.cpp's training API, declared for ctypes in one place (notebook 10).

llama-cpp-python binds `llama_opt_init` and `llama_opt_epoch`, but not all of
what they need: its `llama_opt_params` has 5 fields where llama.h has 6 (the
optimizer type is missing, and the struct is passed by value, so the size
matters), the learning-rate callback returns a struct by value (a ctypes
callback cannot), and the `ggml_opt_dataset_*` / `ggml_opt_result_*`
functions are exported by libggml-base but not bound. Everything the kit
declares itself is here, checked against the installed version on import;
tests/test_finetune.py fails loudly when the layout changes. `train` is the
step loop kit/finetune.py drives. Private parts of llama-cpp-python used
here (covered by the version check): `llama_cpp.llama_cpp._lib` and
`_ctypes_extensions.load_shared_library` (the context and model handles come
from the public `Llama.ctx` and `Llama.model`).

>>> from kit.engines import llama_train as lt
>>> lt.PROBLEM is None        # else a sentence saying what changed
"""
from __future__ import annotations

import ctypes

from kit.engines.llamacpp import import_llama_cpp

# Versions whose llama.h these declarations were read against (and run with).
VERIFIED_VERSIONS = ("0.3.36",)
# llama-cpp-python's own (incomplete) declaration, as we expect to find it.
BOUND_FIELDS = ("n_ctx_train", "param_filter", "param_filter_ud", "get_opt_pars",
                "get_opt_pars_ud")
GGML_TYPE_I32 = 26
OPTIMIZER_ADAMW, OPTIMIZER_SGD = 0, 1

llama_cpp = import_llama_cpp()
c_void_p, c_int64, c_float = ctypes.c_void_p, ctypes.c_int64, ctypes.c_float


class OptParams(ctypes.Structure):
    """struct llama_opt_params, all 6 fields (llama.h)."""

    _fields_ = [
        ("n_ctx_train", ctypes.c_uint32),
        ("param_filter", llama_cpp.llama_opt_param_filter),
        ("param_filter_ud", c_void_p),
        ("get_opt_pars", c_void_p),  # ggml_opt_get_optimizer_params
        ("get_opt_pars_ud", c_void_p),
        ("optimizer_type", ctypes.c_int),  # enum ggml_opt_optimizer_type
    ]


class _AdamW(ctypes.Structure):
    _fields_ = [("alpha", c_float), ("beta1", c_float), ("beta2", c_float),
                ("eps", c_float), ("wd", c_float)]


class _Sgd(ctypes.Structure):
    _fields_ = [("alpha", c_float), ("wd", c_float)]


class OptimizerParams(ctypes.Structure):
    """struct ggml_opt_optimizer_params: read by llama.cpp before every step."""

    _fields_ = [("adamw", _AdamW), ("sgd", _Sgd)]


def _libraries():
    import pathlib

    from llama_cpp._ctypes_extensions import load_shared_library

    folder = pathlib.Path(llama_cpp.__file__).parent / "lib"
    # the same file libllama already loaded: dlopen hands back that copy
    return llama_cpp.llama_cpp._lib, load_shared_library("ggml-base", folder)


libllama, libggml = _libraries()

_DECLARATIONS = [  # (library, name, argument types, result type)
    (libllama, "llama_opt_init", [c_void_p, c_void_p, OptParams], None),
    (libllama, "llama_opt_epoch", [c_void_p, c_void_p, c_void_p, c_void_p, c_int64,
                                   c_void_p, c_void_p], None),
    (libllama, "llama_model_save_to_file", [c_void_p, ctypes.c_char_p], None),
    (libggml, "ggml_opt_dataset_init", [ctypes.c_int, ctypes.c_int, c_int64, c_int64,
                                        c_int64, c_int64], c_void_p),
    (libggml, "ggml_opt_dataset_free", [c_void_p], None),
    (libggml, "ggml_opt_dataset_ndata", [c_void_p], c_int64),
    (libggml, "ggml_opt_dataset_data", [c_void_p], c_void_p),
    (libggml, "ggml_opt_dataset_labels", [c_void_p], c_void_p),
    (libggml, "ggml_get_data", [c_void_p], c_void_p),
    (libggml, "ggml_opt_result_init", [], c_void_p),
    (libggml, "ggml_opt_result_free", [c_void_p], None),
    (libggml, "ggml_opt_result_reset", [c_void_p], None),
    (libggml, "ggml_opt_result_ndata", [c_void_p, ctypes.POINTER(c_int64)], None),
    (libggml, "ggml_opt_result_loss", [c_void_p, ctypes.POINTER(ctypes.c_double),
                                       ctypes.POINTER(ctypes.c_double)], None),
    (libggml, "ggml_opt_get_constant_optimizer_params", [c_void_p], OptimizerParams),
    (libggml, "ggml_opt_get_default_optimizer_params", [c_void_p], OptimizerParams),
]
fn = {}
for _lib, _name, _args, _res in _DECLARATIONS:
    _f = getattr(_lib, _name)  # AttributeError here: the symbol is gone
    _f.argtypes, _f.restype = _args, _res
    fn[_name] = _f
# llama.cpp calls this pointer before each step: constant parameters read
# from the user-data pointer, so Python can change the rate between steps
CONSTANT_PARAMS = ctypes.cast(fn["ggml_opt_get_constant_optimizer_params"], c_void_p)


def check_layout() -> str | None:
    """None when the declarations match the installed llama-cpp-python, else why."""
    version = getattr(llama_cpp, "__version__", "?")
    if version not in VERIFIED_VERSIONS:
        return (f"the training declarations were checked against llama-cpp-python "
                f"{', '.join(VERIFIED_VERSIONS)}, and {version} is installed")
    bound = tuple(f[0] for f in llama_cpp.llama_opt_params._fields_)
    if bound not in (BOUND_FIELDS, tuple(f[0] for f in OptParams._fields_)):
        return f"llama_opt_params now has the fields {bound}"
    if ctypes.sizeof(OptParams) != 48 or ctypes.sizeof(OptimizerParams) != 28:
        return "the structures' sizes differ from llama.h's on this platform"
    return None


PROBLEM = check_layout()


def ensure_supported() -> None:
    """Raise TrainingUnavailable if the declarations cannot be trusted here."""
    if PROBLEM:
        from kit.errors import TrainingUnavailable

        raise TrainingUnavailable(PROBLEM, VERIFIED_VERSIONS)


def optimizer_params(lr: float, weight_decay: float = 0.0) -> OptimizerParams:
    """llama.cpp's default AdamW settings with our learning rate."""
    p = fn["ggml_opt_get_default_optimizer_params"](None)
    p.adamw.alpha = p.sgd.alpha = lr
    p.adamw.wd = p.sgd.wd = weight_decay
    return p


def opt_init(ctx, model, n_ctx: int, params: OptimizerParams) -> OptParams:
    """Prepare the context for training all weights with AdamW (keep params alive)."""
    ensure_supported()
    lp = OptParams(n_ctx_train=n_ctx,
                   param_filter=llama_cpp.llama_opt_param_filter(
                       lambda tensor, ud: True),
                   param_filter_ud=None, get_opt_pars=CONSTANT_PARAMS,
                   get_opt_pars_ud=ctypes.cast(ctypes.pointer(params), c_void_p),
                   optimizer_type=OPTIMIZER_ADAMW)
    fn["llama_opt_init"](ctx, model, lp)
    return lp


class Dataset:
    """Token windows for llama.cpp: each input and its labels (shifted by one)."""

    def __init__(self, windows):
        import numpy as np

        arr = np.asarray(windows, dtype=np.int32)  # (n, n_ctx + 1)
        self.n, width = arr.shape
        self.handle = fn["ggml_opt_dataset_init"](GGML_TYPE_I32, GGML_TYPE_I32,
                                                  width - 1, width - 1, self.n, 1)
        for getter, part in (("ggml_opt_dataset_data", arr[:, :-1]),
                             ("ggml_opt_dataset_labels", arr[:, 1:])):
            ptr = fn["ggml_get_data"](fn[getter](self.handle))
            ctypes.memmove(ptr, np.ascontiguousarray(part).ctypes.data, part.nbytes)

    def close(self):
        if self.handle:
            fn["ggml_opt_dataset_free"](self.handle)
            self.handle = None

    __del__ = close


class Result:
    """A running mean of the loss over the windows seen since reset()."""

    def __init__(self):
        self.handle = fn["ggml_opt_result_init"]()

    def reset(self):
        fn["ggml_opt_result_reset"](self.handle)

    def loss(self) -> float:
        loss, unc = ctypes.c_double(), ctypes.c_double()
        fn["ggml_opt_result_loss"](self.handle, ctypes.byref(loss), ctypes.byref(unc))
        return loss.value

    def close(self):
        if self.handle:
            fn["ggml_opt_result_free"](self.handle)
            self.handle = None

    __del__ = close


def run_epoch(ctx, data: Dataset, train: Result | None, evaluate: Result | None,
              n_train: int) -> None:
    """Train on the first n_train windows, then evaluate on the rest."""
    fn["llama_opt_epoch"](ctx, data.handle, train.handle if train else None,
                          evaluate.handle if evaluate else None, n_train, None, None)


def save_trained(llm, float_path, out, scratch) -> None:
    """Save the trained weights into a copy of the float file, then check it loads.

    llama.cpp's saver drops the chat template and writes the training context
    as the model's context length, so only its tensors are kept: copied into
    the float file's bytes, metadata and all. Closes `llm`.
    """
    import os
    import shutil

    import gguf

    from kit.errors import KitError
    from kit.gguf_check import scan

    try:
        fn["llama_model_save_to_file"](llm.model, os.fsencode(scratch))
    finally:
        llm.close()
    shutil.copyfile(float_path, out)
    dst = gguf.GGUFReader(out, "r+")
    by_name = {t.name: t for t in dst.tensors}
    for t in gguf.GGUFReader(scratch).tensors:
        d = by_name.get(t.name)
        if d is None or d.tensor_type != t.tensor_type or d.n_bytes != t.n_bytes:
            raise KitError(f"The trained tensor {t.name} does not match the float "
                           "copy; nothing was saved. Delete the copy and try again.")
        d.data[...] = t.data
    dst.data.flush()
    del dst
    scan(out)
    check = llama_cpp.Llama(model_path=str(out), n_ctx=64, n_batch=64, verbose=False)
    try:  # it loads and reads a few tokens
        check.eval(check.tokenize(b"The library opens at", add_bos=True))
    finally:
        check.close()


def train(float_path, train_w, eval_w, n_ctx: int, epochs: int, lr: float,
          threads: int, progress: bool = True, seed: int = 0, on_step=None):
    """Train every weight of a float model file in memory, one window per step.

    Returns (Llama, step losses, epoch losses, held-out losses, seconds); the
    held-out losses start with the one before training. One llama_opt_epoch
    call per step, so Python (and Ctrl-C) gets control back after each step.
    """
    import random
    import time

    from tqdm import tqdm

    from kit.errors import KitError

    ensure_supported()
    llm = llama_cpp.Llama(
        model_path=str(float_path), n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=n_ctx,
        n_threads=threads, n_threads_batch=threads, use_mmap=False,  # writable
        flash_attn=False, type_k=llama_cpp.GGML_TYPE_F32,  # no F16 backward pass
        type_v=llama_cpp.GGML_TYPE_F32, verbose=False)
    if llm.n_ctx() != n_ctx:
        llm.close()
        raise KitError(f"llama.cpp made a context of {llm.n_ctx()} tokens, not "
                       f"{n_ctx}; use a multiple of 256.")
    llm.eval(train_w[0][:n_ctx])  # the optimizer never sets the thread count:
    llm.reset()                   # this decode does
    params = optimizer_params(lr)
    keep = opt_init(llm.ctx, llm.model, n_ctx, params)  # noqa: F841
    ctx = llm.ctx
    train_ds = [Dataset([w]) for w in train_w]
    eval_ds, r_train, r_eval = Dataset(eval_w), Result(), Result()

    def held_out() -> float:
        r_eval.reset()
        run_epoch(ctx, eval_ds, None, r_eval, 0)
        return r_eval.loss()

    steps, epoch_losses, evals = [], [], [held_out()]
    rng, t0 = random.Random(seed), time.perf_counter()
    bar = tqdm(total=epochs * len(train_ds), unit="step", disable=not progress,
               desc="training")
    try:
        for epoch in range(epochs):
            order = list(range(len(train_ds)))
            rng.shuffle(order)
            for i in order:
                r_train.reset()
                run_epoch(ctx, train_ds[i], r_train, None, 1)  # one step
                steps.append(r_train.loss())
                bar.update(1)
                bar.set_postfix(epoch=epoch + 1, loss=f"{steps[-1]:.3f}")
                if on_step:
                    on_step(len(steps), steps[-1])
            epoch_losses.append(sum(steps[-len(order):]) / len(order))
            evals.append(held_out())
            bar.write(f"epoch {epoch + 1}: training loss {epoch_losses[-1]:.3f}, "
                      f"held-out loss {evals[-1]:.3f}")
    except BaseException:
        llm.close()  # stopped or failed: give the memory back now
        raise
    finally:
        bar.close()
        for d in (*train_ds, eval_ds, r_train, r_eval):
            d.close()
    return llm, steps, epoch_losses, evals, time.perf_counter() - t0
