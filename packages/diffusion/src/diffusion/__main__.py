import sys
from pathlib import Path

from fulcrum_core.cli import main

from .experiments import EXPERIMENTS


def cli() -> int:
    return main("diffusion", EXPERIMENTS, source=Path(__file__).parent)


if __name__ == "__main__":
    sys.exit(cli())
