"""``python -m swarm.agent ROLE [--replicas N] [--redis URL]``: see :mod:`swarm.agent.cli`."""

from swarm.agent.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
