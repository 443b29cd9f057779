"""`python -m tests.faulty_runner FAULTS [runner args]`: the real CLI, with render faults
injected through its render-function seam (FAULTS as in tests.render_faults.parse_faults)."""

from __future__ import annotations

import functools
import sys

from runner.cli import RunSeams, main
from tests.render_faults import faulty_render, parse_faults

if __name__ == "__main__":
    faults = parse_faults(sys.argv.pop(1))
    main(RunSeams(render=functools.partial(faulty_render, faults)))
