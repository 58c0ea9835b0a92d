"""``python -m swarm.client``: the ``queenswarm`` command."""

from swarm.client.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
