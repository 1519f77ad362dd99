import sys

from vlmquant.cli import main

# The guard matters: vLLM starts workers with `spawn`, which re-imports this module.
if __name__ == "__main__":
    sys.exit(main())
