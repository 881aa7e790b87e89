"""`kit finetune MODEL --data FILE`: thin shell over kit.finetune (notebook 10)."""
from __future__ import annotations

import sys


def cmd_finetune(a) -> int:
    from kit.errors import TrainingTooLong
    from kit.finetune import finetune

    opts = dict(data=a.data, epochs=a.epochs, lr=a.lr, n_ctx=a.ctx, label=a.label,
                system=a.system, threads=a.threads, quantize=a.quantize,
                force=a.force, progress=sys.stderr.isatty())
    try:
        run = finetune(a.model, max_minutes=None if a.yes else a.max_minutes, **opts)
    except TrainingTooLong as exc:
        if not sys.stdin.isatty():
            raise
        print(f"{exc}\nTrain anyway? [y/N] ", end="", flush=True)
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            print("Nothing trained.")
            return 1
        run = finetune(a.model, max_minutes=None, **opts)
    print(f"Registered {run.name}"
          + (f" and {run.quantized}" if run.quantized else "")
          + f". Ask it: kit run {run.name} \"...\"  (compare with {a.model})")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "finetune", help="teach a model your own text (trains every weight on the CPU)",
        description="Train MODEL on a text file (.txt/.md) or question/answer pairs "
        "(.jsonl), then register the result as MODEL-ft-LABEL. Prints the memory "
        "and time it expects first; Ctrl-C stops and leaves nothing behind.")
    p.add_argument("model", help="kit name or .gguf path (e.g. smollm2:135m)")
    p.add_argument("--data", required=True, metavar="FILE", help="training data")
    p.add_argument("--epochs", type=int, default=3, help="passes over the data, 1 to 1000 (3)")
    p.add_argument("--lr", type=float, default=3e-5, help="learning rate, 1e-8 to 0.01 (3e-5)")
    p.add_argument("--ctx", type=int, default=256,
                   help="tokens per training window, up to 4096; used in steps of 256 (256)")
    p.add_argument("--label", default="ft", help="name suffix: MODEL-ft-LABEL (ft)")
    p.add_argument("--system", help="system prompt for question/answer pairs")
    p.add_argument("--threads", type=int)
    p.add_argument("--quantize", action="store_true",
                   help="also make a Q8_0 copy (faster to run)")
    p.add_argument("--max-minutes", type=float, default=30,
                   help="ask (or refuse) above this estimate (30)")
    p.add_argument("--yes", action="store_true", help="do not ask about long runs")
    p.add_argument("--force", action="store_true", help="replace MODEL-ft-LABEL")
    p.set_defaults(func=cmd_finetune)
