"""The stock TGE application as a bundle: found by ``python -m swarm.queen`` through
the ``queenswarm.agents`` entry point named ``default`` (see ``pyproject.toml``).

The framework never imports this package by name: it is an application like
any user's, with agents (:func:`agents.default_swarm`), a job
(:func:`agents.job.run_tge_job`) and options of its own (``add_arguments``).

Example:
    >>> from agents.app import bundle
    >>> bundle.name, len(bundle.make_agents()), bundle.job is not None
    ('tge', 5, True)
"""

from __future__ import annotations

import argparse

import msgspec

from agents import default_swarm
from agents.corpus import load_input, load_sources
from agents.job import run_tge_job
from agents.report import render_text
from swarm.errors import ConfigError
from swarm.service.bundle import Bundle, JobOutcome, Progress
from swarm.swarm import Swarm

__all__ = ["bundle"]


async def _job(swarm: Swarm, options: argparse.Namespace, progress: Progress) -> JobOutcome:
    path, sources = getattr(options, "input", None), getattr(options, "sources", None)
    if path and sources:
        raise ConfigError("--input and --sources are exclusive: give one corpus")
    corpus = load_input(path) if path else load_sources(sources) if sources else None
    report = await run_tge_job(
        swarm, corpus=corpus, progress=progress,
        task_timeout=getattr(options, "task_timeout", 60.0),
    )
    return JobOutcome(ok=report.ok, text=render_text(report), data=msgspec.to_builtins(report))


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    """The TGE job's own options."""
    parser.add_argument(
        "--input",
        metavar="FILE",
        help=(
            "JSON Lines documents to search instead of the bundled excerpts: one object a "
            'line, {"id", "text"} or {"id", "title", "body"}, optional "source", "url", '
            '"published" (and "label" to be scored against); malformed lines are reported '
            "by number and skipped"
        ),
    )
    parser.add_argument(
        "--sources",
        metavar="FILE",
        help=(
            "TOML file of live sources to scrape instead: [[source]] tables with id, kind "
            "(rss, json, html), url (json: items, fields) and an optional [fetch] table "
            "(per_host_rate, per_host_concurrency, caps; allow = local networks, off by default)"
        ),
    )


#: The stock TGE pipeline: five specialists and the job that drives them.
bundle = Bundle(name="tge", agents=default_swarm, job=_job, add_arguments=_add_arguments)
