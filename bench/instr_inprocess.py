"""Instruction-count harness for the in-process runtime (run under callgrind).

Runs the pipelined phase of ``bench_inprocess.py`` once for ``--tasks`` tasks
(queenswarm or the bare loop) after a warm-up, so that the difference of two
callgrind totals (e.g. 2 000 and 100 tasks) divided by the task difference is
the machine-independent cost of one task.

Run::

    valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.2000 \\
        python bench/instr_inprocess.py --tasks 2000
    valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.100 \\
        python bench/instr_inprocess.py --tasks 100
    # (total(2000) - total(100)) / 1900 = instructions per task

Set ``PYTHONHASHSEED=0`` for repeatable totals. Callgrind slows the process
~50x, so work cached per millisecond (the id prefix in ``new_id``) is redone
for nearly every task there: the figure slightly overstates a real run.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_inprocess import bare, swarm_run


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2_000)
    parser.add_argument("--window", type=int, default=100)
    parser.add_argument("--bare", action="store_true", help="measure the bare asyncio loop")
    args = parser.parse_args()
    fn = bare if args.bare else swarm_run
    await fn(200, args.window)  # warm-up: imports, decoder caches
    elapsed, _ = await fn(args.tasks, args.window)
    print(f"{args.tasks} tasks in {elapsed:.3f}s")


if __name__ == "__main__":
    asyncio.run(main())
