"""Fine-tuning figures for the starter model (kit.finetune, notebook 10).

Run with `python benchmarks/finetune.py` (after `make setup`); `--quick` for
a short smoke run. Prints one table; nothing is asserted (shared machines
are noisy: the load average is printed beside each run). Each training runs
in a process of its own, so its peak memory is its own:

- context 256 and 512: seconds per epoch, training tokens per second (held-
  out passes included in the time), peak resident memory;
- held-out loss before and after, at learning rates 3e-5 and 1e-4 (context
  256, 3 epochs on the bundled library guide);
- general-knowledge retention (of 10 questions) of the float copy and of
  each trained model.

Everything is written to a temporary store and deleted at the end.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RUNS = [  # label, context, learning rate, epochs
    ("ctx256", 256, 3e-5, 3),
    ("ctx512", 512, 3e-5, 1),
    ("fast", 256, 1e-4, 3),
]


def one(label: str, n_ctx: int, lr: float, epochs: int, max_tokens: int | None) -> dict:
    """One training in this process; returns its figures."""
    from kit.finetune import bundled, finetune, retention

    load = os.getloadavg()[0]
    run = finetune("smollm2:135m", bundled("library"), label=label, lr=lr,
                   n_ctx=n_ctx, epochs=epochs, max_tokens=max_tokens,
                   max_minutes=None, progress=False, quiet=True)
    score, _ = retention(run.name) if label != "ctx512" else (None, None)
    return {"label": label, "n_ctx": n_ctx, "lr": lr, "epochs": epochs,
            "windows": run.plan.n_train, "s_per_epoch": run.seconds / epochs,
            "tok_s": run.tokens_per_s, "peak_gb": run.peak_memory / 1e9,
            "eval_before": run.eval_losses[0], "eval_after": run.eval_losses[-1],
            "retention": score, "estimate_s": run.plan.seconds, "load": load}


def main() -> None:
    if "--one" in sys.argv:
        args = json.loads(sys.argv[sys.argv.index("--one") + 1])
        print("RESULT " + json.dumps(one(**args)), flush=True)
        return
    quick = "--quick" in sys.argv
    from kit.models.starter import install_starter

    starter = install_starter(quiet=True).path  # before KIT_HOME moves
    home = Path(tempfile.mkdtemp(prefix="kit-bench-ft-"))
    env = {**os.environ, "KIT_HOME": str(home)}
    os.environ["KIT_HOME"] = str(home)
    try:
        from kit.finetune import float_copy, retention
        from kit.models.registry import register

        register("smollm2:135m", starter)  # in place: nothing copied
        base_score, _ = retention(float_copy("smollm2:135m", quiet=True))
        print(f"float copy (F32): general knowledge {base_score}/10", flush=True)
        rows = []
        for label, n_ctx, lr, epochs in RUNS:
            args = dict(label=label, n_ctx=n_ctx, lr=lr, epochs=1 if quick else epochs,
                        max_tokens=2 * (n_ctx + 1) if quick else None)
            done = subprocess.run([sys.executable, __file__, "--one", json.dumps(args)],
                                  env=env, capture_output=True, text=True)
            line = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
            if not line:
                print(f"{label}: failed\n{done.stderr[-2000:]}", flush=True)
                continue
            rows.append(json.loads(line[0][7:]))
            print(_row(rows[-1]), flush=True)
        print("\nFine-tuning smollm2:135m (F32, AdamW, all weights), "
              f"{os.cpu_count()} cores, threads = kit default")
        print(f"{'run':8} {'ctx':>4} {'lr':>6} {'ep':>3} {'win':>4} {'s/epoch':>8} "
              f"{'tok/s':>6} {'peak GB':>8} {'loss before':>12} {'after':>6} "
              f"{'GK/10':>6} {'est. s':>7} {'load':>5}")
        for r in rows:
            print(_row(r))
        print(f"float copy before training: general knowledge {base_score}/10")
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _row(r: dict) -> str:
    gk = "-" if r["retention"] is None else f"{r['retention']}"
    return (f"{r['label']:8} {r['n_ctx']:>4} {r['lr']:>6.0e} {r['epochs']:>3} "
            f"{r['windows']:>4} {r['s_per_epoch']:>8.1f} {r['tok_s']:>6.1f} "
            f"{r['peak_gb']:>8.2f} {r['eval_before']:>12.3f} {r['eval_after']:>6.3f} "
            f"{gk:>6} {r['estimate_s']:>7.0f} {r['load']:>5.1f}")


if __name__ == "__main__":
    main()
