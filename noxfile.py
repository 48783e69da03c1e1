"""Developer sessions: `nox -s tests lint types docs bench`."""

import nox

nox.options.sessions = ["tests", "lint", "types"]
nox.options.reuse_existing_virtualenvs = True


# The oldest and newest Pythons the dependencies install on (google-genai 3 needs 3.11).
SUPPORTED_PYTHONS = ["3.11", "3.13"]


@nox.session(python=SUPPORTED_PYTHONS)
def tests(session: nox.Session) -> None:
    session.install(".[test]")
    session.run("python", "-m", "pytest", "-q", "-n", "4", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", "batchling", "tests", "examples")
    session.run("ruff", "format", "--check", "batchling")


@nox.session
def types(session: nox.Session) -> None:
    session.install(".", "mypy")
    session.run("mypy", "batchling")


@nox.session
def docs(session: nox.Session) -> None:
    """Regenerate the README's CLI reference (`nox -s docs -- --check` only checks it)."""
    session.install(".")
    session.run("python", "-m", "batchling.docs", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    session.install(".")
    session.run("python", "-m", "benchmarks", *session.posargs)
