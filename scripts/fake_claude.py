"""Serve the scripted fake of the Messages API on 127.0.0.1 for trying agent mode offline.

    python scripts/fake_claude.py --port 8765 &
    ANTHROPIC_API_KEY=fake ANTHROPIC_BASE_URL=http://127.0.0.1:8765 python -m runner --retrieval agent

To see agent mode against a misbehaving API: `--fault rate-limit --retry-after 5` (every
request, or only the first N with `--times N`), `--fault overloaded`, `--fault server-error`,
`--fault html` (a gateway's HTML error page), `--fault hang` (accepts, never answers), or
`--tool-fault broken-input|wrong-arguments|unknown-tool` (the model calls tools wrongly).
"""

from __future__ import annotations

import argparse
import time

from runner.demo.fake_claude import FakeClaude, QueuedError, ToolFault

FAULTS = ("rate-limit", "overloaded", "server-error", "html", "hang")


def fault_error(fault: str, retry_after: float | None) -> QueuedError:
    headers = (("retry-after", f"{retry_after:g}"),) if retry_after is not None else ()
    if fault == "rate-limit":
        return QueuedError(429, "rate_limit_error", "rate limited by the fake", headers)
    if fault == "overloaded":
        return QueuedError(529, "overloaded_error", "overloaded", headers)
    if fault == "server-error":
        return QueuedError(500, "api_error", "internal server error", headers)
    return QueuedError(502, "api_error", "Bad Gateway", headers, html=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument("--fault", choices=FAULTS, help="How the API misbehaves.")
    parser.add_argument("--times", type=int, help="Only the first N requests get the fault (default: all).")
    parser.add_argument("--retry-after", type=float, help="The retry-after header sent with the fault.")
    parser.add_argument("--tool-fault", choices=[f.value for f in ToolFault], help="How the model's tool calls "
                        "go wrong, for every merchant.")
    args = parser.parse_args()
    fake = FakeClaude()
    if args.fault == "hang":
        fake.hang = True
    elif args.fault and args.times is not None:
        fake.errors.extend([fault_error(args.fault, args.retry_after)] * args.times)
    elif args.fault:
        fake.always = fault_error(args.fault, args.retry_after)
    if args.tool_fault:
        fake.tool_faults["*"] = ToolFault(args.tool_fault)
    fake.start(args.port)
    print(f"READY {fake.url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        fake.stop()


if __name__ == "__main__":
    main()
