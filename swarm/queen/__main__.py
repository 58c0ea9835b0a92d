"""``python -m swarm.queen``: run the Queen (embedded swarm by default)."""

from swarm.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
