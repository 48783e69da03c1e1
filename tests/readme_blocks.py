"""The README's code blocks, and a runner that pastes them in order as a reader would.

`python tests/readme_blocks.py README.md PORT` runs, in the current directory, every `bash` block
in one bash session (`set -e`: the first failing command stops it) and every `python` block in one
Python session (one namespace, like a REPL kept open), in README order. The environment and
directory the bash session ends a block with are the ones the next Python block sees, as for a
reader who runs Python from that shell. `json` blocks must parse (as one document, or one document
a line); `text` blocks are output and are not run. A block preceded by
`<!-- not run: why -->` (other HTML comments may stand between) is skipped; any other block is
an error. The only change to a block: the emulator's port 8765 becomes PORT, which is free.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import traceback
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

README_PORT = "8765"
RUNNABLE = ("bash", "python")
DATA = ("json", "text")
BLOCK_SECONDS = 180
_FENCE = re.compile(r"^( *)```(\S*)[ \t]*\n(.*?)^\1```[ \t]*$", re.M | re.S)
_NOT_RUN = re.compile(r"<!-- not run: (.+?) -->")
_COMMENT = re.compile(r"^\s*<!--.*-->\s*$")


@dataclass
class Block:
    line: int
    language: str
    code: str
    not_run: str | None

    @property
    def where(self) -> str:
        return f"README.md line {self.line} ({self.language or 'no language'} block)"


def readme_blocks(text: str) -> list[Block]:
    blocks = []
    for match in _FENCE.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        indent = match.group(1)
        code = textwrap.dedent("".join(indent + c for c in match.group(3).splitlines(True)))
        blocks.append(Block(line, match.group(2), code, _marker(text, match.start())))
    return blocks


def _marker(text: str, start: int) -> str | None:
    """The reason of a `<!-- not run: ... -->` among the comment lines just above a fence."""
    for line in reversed(text[:start].splitlines()[-5:]):
        if not _COMMENT.match(line):
            return None
        found = _NOT_RUN.search(line)
        if found:
            return found.group(1)
    return None


def check_data(block: Block) -> None:
    if block.language == "json":
        try:
            json.loads(block.code)
        except json.JSONDecodeError:
            for number, line in enumerate(block.code.splitlines(), 1):
                try:
                    json.loads(line)
                except json.JSONDecodeError as error:
                    raise SystemExit(
                        f"{block.where}: neither one JSON document nor one a line "
                        f"(its line {number}: {error})"
                    ) from None


class Shell:
    """One bash session fed a block at a time; its commands read stdin from /dev/null."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.count = 0
        self.process = subprocess.Popen(
            [
                "bash",
                "--noprofile",
                "--norc",
                "-c",
                'exec 3<&0 </dev/null; set -e; while IFS= read -r -u 3 line; do eval "$line"; done',
            ],
            stdin=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    def run(self, block: Block, code: str) -> None:
        self.count += 1
        script = self.state / f"block{self.count}.sh"
        script.write_text(code)
        done = self.state / f"done{self.count}"
        assert self.process.stdin is not None
        self.process.stdin.write(
            f"source {script}; env -0 > {self.state}/env; pwd > {self.state}/cwd; : > {done}\n"
        )
        self.process.stdin.flush()
        deadline = time.monotonic() + BLOCK_SECONDS
        while not done.exists():
            if self.process.poll() is not None:
                raise SystemExit(f"{block.where} failed: bash exited {self.process.returncode}")
            if time.monotonic() > deadline:
                raise SystemExit(f"{block.where} still running after {BLOCK_SECONDS} s")
            time.sleep(0.05)

    def environment(self) -> tuple[dict[str, str], str] | None:
        env_file = self.state / "env"
        if not env_file.exists():
            return None
        pairs = env_file.read_bytes().decode().split("\0")
        env = dict(pair.split("=", 1) for pair in pairs if "=" in pair)
        return env, (self.state / "cwd").read_text().strip()

    def close(self) -> None:
        """Ends the session and everything it left running in the background (the emulator)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(10)


def run_python(block: Block, namespace: dict[str, Any], shell: Shell) -> None:
    found = shell.environment()
    if found is not None:
        env, cwd = found
        os.environ.clear()
        os.environ.update(env)
        os.chdir(cwd)
    try:
        code = compile(
            block.code, f"README.md, block at line {block.line}", "exec", dont_inherit=True
        )
        exec(code, namespace)
    except BaseException:
        traceback.print_exc()
        raise SystemExit(f"{block.where} failed") from None


def main(readme: Path, port: str) -> None:
    blocks = readme_blocks(readme.read_text(encoding="utf-8"))
    state = Path(".readme-run")
    state.mkdir()
    shell = Shell(state.resolve())
    # The blocks' own module is `__main__`, as in a REPL, so classes they define can be found.
    session = types.ModuleType("__main__")
    sys.modules["__main__"] = session
    namespace: dict[str, Any] = session.__dict__
    try:
        for block in blocks:
            if block.not_run is not None:
                continue
            if block.language in DATA:
                check_data(block)
                continue
            if block.language not in RUNNABLE:
                raise SystemExit(
                    f"{block.where} cannot be run here: give it a language of {RUNNABLE} or "
                    f"{DATA}, or mark it with <!-- not run: why --> on the line above."
                )
            began = time.monotonic()
            print(f"--- {block.where}", flush=True)
            if block.language == "bash":
                shell.run(block, block.code.replace(README_PORT, port))
            else:
                run_python(block, namespace, shell)
            print(f"--- {block.where}: {time.monotonic() - began:.1f} s", flush=True)
    finally:
        shell.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
