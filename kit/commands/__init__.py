"""Extra `kit` verbs, one module each (pull, quantize, bench, serve, ...).

Each module defines `register(subparsers)`, which adds its verb(s) with
`set_defaults(func=...)`; `func(args)` returns the exit code. Modules must keep
heavy imports inside their functions so `kit --help` stays instant.
"""
