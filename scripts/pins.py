"""Print the requirement lines of pyproject extras, one a line (stdlib only: runs before setup).

python3 scripts/pins.py pipeline cpu test
"""

import sys
import tomllib
from pathlib import Path

extras = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())[
    "project"
]["optional-dependencies"]
for name in sys.argv[1:]:
    if name not in extras:
        sys.exit(f"pins.py: no extra {name!r} in pyproject.toml (have: {', '.join(extras)})")
    print("\n".join(extras[name]))
