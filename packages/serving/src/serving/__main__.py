import sys
from pathlib import Path

from fulcrum_core.cli import main

from .experiments import EXPERIMENTS


def cli(argv: list[str] | None = None) -> int:
    """``python -m serving simulate ...`` runs the simulator; everything else is the shared list|run|plot."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "simulate":
        from .cli import simulate_main

        return simulate_main(args[1:])
    if args and args[0] == "bench":
        from .bench import main as bench_main

        return bench_main(args[1:])
    if args and args[0] == "serve":
        from .engine import main as serve_main

        return serve_main(args[1:])
    if args and args[0] in ("-h", "--help"):
        print(
            "serving also has: python -m serving simulate --help   (replay a trace through the simulator)\n"
            "                  python -m serving bench --help      (load client for any OpenAI-compatible server)\n"
            "                  python -m serving serve --help      (a small real CPU engine)\n"
        )
    return main("serving", EXPERIMENTS, args, source=Path(__file__).parent)


if __name__ == "__main__":
    sys.exit(cli())
