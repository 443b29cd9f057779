"""Serve the scripted fake of the Messages API on 127.0.0.1 for trying agent mode offline.

    python scripts/fake_claude.py --port 8765 &
    ANTHROPIC_API_KEY=fake ANTHROPIC_BASE_URL=http://127.0.0.1:8765 python -m runner --retrieval agent
"""

from __future__ import annotations

import argparse
import time

from runner.demo.fake_claude import FakeClaude


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    args = parser.parse_args()
    fake = FakeClaude().start(args.port)
    print(f"READY {fake.url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        fake.stop()


if __name__ == "__main__":
    main()
