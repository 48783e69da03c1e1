from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from batchling.cli import cli
from batchling.docs import END, START, cli_reference, main, with_reference

README = Path(__file__).parent.parent / "README.md"


def test_readme_cli_reference_is_up_to_date() -> None:
    readme = README.read_text(encoding="utf-8")
    assert with_reference(readme, cli_reference()) == readme, (
        "README's CLI reference is out of date: run 'python -m batchling.docs' (or 'nox -s docs')."
    )


def test_reference_has_every_command_with_its_options() -> None:
    reference = cli_reference()
    for name, command in cli.commands.items():
        assert f"`batchling {command.name}`" in reference, name
        for param in command.params:
            for opt in param.opts:
                if opt.startswith("--"):
                    assert opt in reference, (name, opt)
    assert "### `batchling status` (alias: `batchling get`)" in reference
    assert reference.count("### `batchling status`") == 1


def test_check_fails_on_a_stale_readme_and_passes_once_regenerated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stale = tmp_path / "README.md"
    stale.write_text(f"# Title\n\n{START}\nold text\n{END}\n\nAfter.\n", encoding="utf-8")
    assert main(["--check", str(stale)]) == 1
    assert "out of date" in capsys.readouterr().err
    assert main([str(stale)]) == 0
    assert main(["--check", str(stale)]) == 0
    text = stale.read_text(encoding="utf-8")
    assert text.startswith("# Title\n\n") and text.endswith("\n\nAfter.\n")
    assert "old text" not in text and "Usage: batchling wait [OPTIONS] NAME..." in text


def test_a_readme_without_markers_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cli-reference:start"):
        with_reference("# no markers\n", cli_reference())


def test_shell_completion_as_the_readme_says() -> None:
    runner = CliRunner()
    script = runner.invoke(
        cli, [], prog_name="batchling", env={"_BATCHLING_COMPLETE": "bash_source"}
    )
    assert script.exit_code == 0
    assert "_batchling_completion" in script.output and "complete " in script.output
    answer = runner.invoke(
        cli,
        [],
        prog_name="batchling",
        env={
            "_BATCHLING_COMPLETE": "bash_complete",
            "COMP_WORDS": "batchling wa",
            "COMP_CWORD": "1",
        },
    )
    assert answer.output.split() == ["plain,wait", "plain,watch"]
