"""The README is the test: every shell command it shows runs, in order, as a user runs it.

In a fresh copy of the repository, with the environment a user has (no MLFLOW_* variable, no
fixture), each command of the README's `bash` and `console` blocks runs in order and must exit
0; a `console` block's output lines must appear in the command's output, in order (ids, times
and the copy's own path masked, numbers within a tolerance, `...` for lines left out). A block
the README marks `<!-- readme-test: skip: why -->` is not run (the test says which and why);
`<!-- readme-test: server URL -->` runs each command of the next block as a server, waits for
URL to answer, keeps it until the block after has run, then stops it. `RUN_ID` in a command is
the latest sweep's parent run; `<!-- readme-test: exit N -->`: the next block's commands exit N.
With README_TEST_RECORD=FILE set, the outputs are written there instead of checked (to
regenerate the README's examples from real runs). Markdown is parsed by markdown-it-py.
The copy reuses this checkout's installed `.venv` (a test reaches no package registry).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from markdown_it import MarkdownIt
from mlflow.tracking import MlflowClient

REPO = Path(__file__).resolve().parents[1]
MARKER = re.compile(r"<!--\s*readme-test:\s*(.*?)\s*-->", re.S)
NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
TOLERANCE = 0.02  # scores may move in the third decimal between library versions
COMMAND_TIMEOUT_S = 900
SERVER_START_S = 180
RECORD = os.environ.get("README_TEST_RECORD")


@dataclass
class Command:
    """One command of the README, where it is, and what the README says it prints."""

    line: int
    text: str
    expected: list[str] = field(default_factory=list)
    server: str | None = None  # a URL to wait for: the command is a server
    exit_code: int = 0  # what the README says it exits with


@dataclass
class Block:
    """A fenced block of the README: its commands, or why it is not run."""

    line: int
    commands: list[Command]
    skip: str | None = None


def readme_blocks(text: str) -> list[Block]:
    """The README's `bash` and `console` blocks, in order, with their markers applied."""
    blocks: list[Block] = []
    marker: str | None = None
    for token in MarkdownIt().parse(text):
        if token.type == "html_block" and (found := MARKER.search(token.content)):
            marker = found.group(1)
            continue
        if token.type != "fence":
            continue
        language = token.info.strip()
        if language in ("bash", "console"):
            assert token.map is not None
            first = token.map[0] + 2  # the fence's first content line, 1-based
            commands = (bash_commands if language == "bash" else console_commands)(
                token.content, first
            )
            skip = (
                marker.removeprefix("skip:").strip()
                if marker and marker.startswith("skip:")
                else None
            )
            for command in commands:
                if marker and marker.startswith("server "):
                    command.server = marker.removeprefix("server ").strip()
                if marker and marker.startswith("exit "):
                    command.exit_code = int(marker.removeprefix("exit "))
            blocks.append(Block(first, commands, skip))
        marker = None
    return blocks


def _joined(lines: list[str], start: int) -> tuple[str, int]:
    """The command starting at lines[start], with its `\\` continuation lines; the next index."""
    parts, i = [lines[start]], start
    while parts[-1].rstrip().endswith("\\") and i + 1 < len(lines):
        i += 1
        parts.append(lines[i])
    return "\n".join(parts), i + 1


def bash_commands(content: str, first_line: int) -> list[Command]:
    """Each command of a `bash` block (comment lines and blank lines are not commands)."""
    lines, commands, i = content.splitlines(), [], 0
    while i < len(lines):
        stripped = lines[i].strip()
        if not stripped or stripped.startswith("#"):
            i += 1
            continue
        text, after = _joined(lines, i)
        commands.append(Command(first_line + i, text))
        i = after
    return commands


def console_commands(content: str, first_line: int) -> list[Command]:
    """Each `$ ` command of a `console` block, with the output lines the README shows after it."""
    lines, commands, i = content.splitlines(), [], 0
    while i < len(lines):
        if lines[i].startswith("$ "):
            text, after = _joined([lines[i][2:], *lines[i + 1 :]], 0)
            commands.append(Command(first_line + i, text))
            i += after
        else:
            if commands and lines[i].strip():
                commands[-1].expected.append(lines[i])
            i += 1
    return commands


def normalise(line: str, root: Path) -> str:
    """A line with what differs between runs masked: the copy's path, ids, dates, durations."""
    line = line.replace(str(root), "/path/to/repo")
    line = re.sub(r"(?:/[\w.+-]+)+/(outputs|tests)/", r"/path/to/repo/\1/", line)
    line = re.sub(r"\b(m-)?[0-9a-f]{32}\b", "<id>", line)
    line = re.sub(r"\d{4}-\d{2}-\d{2}[ _T]\d{2}[:-]\d{2}[:-]\d{2}(?:[-.]\d+)?", "<time>", line)
    line = re.sub(r"~?\d+(?:\.\d+)?\s?s\b", "<s>", line)  # durations: 4.9s, ~2.5s left
    return " ".join(line.split())


def same_line(expected: str, actual: str) -> bool:
    """Equal text between the numbers, and numbers within TOLERANCE (integers exactly)."""
    if NUMBER.split(expected) != NUMBER.split(actual):
        return False
    for want, got in zip(NUMBER.findall(expected), NUMBER.findall(actual), strict=True):
        if "." not in want and "." not in got:
            if want != got:
                return False
        elif abs(float(want) - float(got)) > TOLERANCE:
            return False
    return True


def missing_lines(expected: list[str], output: str, root: Path) -> list[str]:
    """The expected lines not found in `output` in order (`...` stands for any lines)."""
    actual = [normalise(a, root) for a in output.splitlines()]
    position, missing = 0, []
    for line in expected:
        want = normalise(line, root)
        if want == "...":
            continue
        for i in range(position, len(actual)):
            if same_line(want, actual[i]):
                position = i + 1
                break
        else:
            missing.append(line)
    return missing


def fresh_copy(tmp: Path) -> Path:
    """The repository's files (what git tracks, and new files it does not ignore) in a new git
    repository, with this checkout's installed .venv beside them."""
    copy = tmp / "repo"
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    for name in filter(None, listed.split("\0")):
        source, target = REPO / name, copy / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():  # conf/sweeps -> ../sweeps
            target.symlink_to(os.readlink(source))
        elif source.is_file():
            shutil.copy2(source, target)
    (copy / ".venv").symlink_to(REPO / ".venv")
    git = ["git", "-c", "user.name=readme", "-c", "user.email=readme@test", "-C", str(copy)]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "copy"], check=True)
    return copy


def user_environment(copy: Path) -> dict[str, str]:
    """A user's environment: no MLFLOW_* variable, no pytest's; the venv activated."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MLFLOW_", "PYTEST_", "HYDRA_")) and k != "VIRTUAL_ENV"
    }
    env["VIRTUAL_ENV"] = str(copy / ".venv")
    env["PATH"] = f"{copy / '.venv' / 'bin'}:{env.get('PATH', '')}"
    return env


def latest_sweep(copy: Path) -> str:
    """The parent run id of the latest sweep in the copy's store (what `RUN_ID` stands for)."""
    client = MlflowClient(f"sqlite:///{copy / 'outputs' / 'mlflow.db'}")
    ids = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(
        ids, "tags.sweep = 'true'", order_by=["start_time DESC"], max_results=1
    )
    assert runs, "RUN_ID: the store has no sweep yet"
    return runs[0].info.run_id


def answers(url: str) -> bool:
    """Whether `url` answers with an HTTP status below 500."""
    try:
        with urllib.request.urlopen(url, timeout=5):
            return True
    except urllib.error.HTTPError as e:
        return e.code < 500
    except (urllib.error.URLError, OSError):
        return False


def start_server(command: Command, copy: Path, env: dict[str, str], log: Path) -> subprocess.Popen:
    """Start a server command in its own process group; wait until its URL answers."""
    with log.open("w") as out:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            ["bash", "-c", command.text], cwd=copy, env=env, start_new_session=True,
            stdout=out, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
    assert command.server is not None
    deadline = time.monotonic() + SERVER_START_S
    while not answers(command.server):
        if process.poll() is not None or time.monotonic() > deadline:
            stop_server(process)
            pytest.fail(f"README line {command.line}: {command.text!r} did not serve "
                        f"{command.server}:\n{log.read_text()[-3000:]}")  # fmt: skip
        time.sleep(1)
    return process


def stop_server(process: subprocess.Popen) -> None:
    """Stop a server's whole process group (make, mlflow, its workers), as Ctrl-C does."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.mark.slow  # every README command, the main sweep included: ~8 minutes
def test_every_readme_command_runs_as_written(tmp_path: Path) -> None:
    stamp = REPO / ".venv" / ".installed"  # the Makefile's: the copy's make must find it current
    assert stamp.is_file() and stamp.stat().st_mtime >= (REPO / "pyproject.toml").stat().st_mtime, (
        "this checkout's .venv is older than pyproject.toml: run make first"
    )
    copy = fresh_copy(tmp_path)
    env = user_environment(copy)
    skipped, servers, took = [], [], []
    for block in readme_blocks((copy / "README.md").read_text()):
        if block.skip:
            skipped.append(f"line {block.line}: {block.skip}")
            continue
        started = []
        for command in block.commands:
            text = (
                command.text.replace("RUN_ID", latest_sweep(copy))
                if "RUN_ID" in command.text
                else command.text
            )
            if command.server:
                log = tmp_path / f"server-{command.line}.log"
                started.append(
                    start_server(Command(command.line, text, server=command.server), copy, env, log)
                )
                continue
            began = time.monotonic()
            result = subprocess.run(
                ["bash", "-c", text], cwd=copy, env=env, capture_output=True, text=True,
                timeout=COMMAND_TIMEOUT_S,
            )  # fmt: skip
            took.append((time.monotonic() - began, command.line, text))
            output = result.stdout + result.stderr
            code = result.returncode
            assert code == command.exit_code, (
                f"README line {command.line}: {text!r} exited {code}:\n{output[-4000:]}"
            )
            if RECORD:
                with open(RECORD, "a") as record:
                    record.write(f"=== line {command.line}: $ {text}\n{output}\n")
                continue
            missing = missing_lines(command.expected, output, copy)
            assert not missing, (
                f"README line {command.line}: {text!r} did not print {missing}; it printed:\n"
                f"{output[-6000:]}"
            )
        for process in servers:  # the servers of the block before: its next block has run
            stop_server(process)
        servers = started
    for process in servers:
        stop_server(process)
    print("Not run here:\n  " + "\n  ".join(skipped))
    slowest = sorted(took, reverse=True)[:10]  # where this test's minutes go (`pytest -s`)
    print(
        "Slowest commands:\n"
        + "\n".join(f"  {s:6.1f} s  line {n}: {t[:90]}" for s, n, t in slowest)
    )
    status = subprocess.run(
        ["git", "status", "--porcelain"], cwd=copy, capture_output=True, text=True, check=True
    ).stdout
    assert status == "", f"README commands wrote outside outputs/:\n{status}"


def test_the_readme_parser_reads_commands_markers_and_output() -> None:
    text = (
        "<!-- readme-test: skip: needs SLURM -->\n```bash\nsbatch x\n```\n\n"
        "```bash\nmake sweep   # main\n# a comment\npython -m a \\\n  --b\n```\n\n"
        "<!-- readme-test: server http://127.0.0.1:5000 -->\n```bash\nmake ui\n```\n\n"
        "```console\n$ python -m src.summary\nSweep <x> 42 children\n...\n  rank 1\n```\n\n"
        "```text\n$ not run\n```\n"
    )
    blocks = readme_blocks(text)
    assert [b.skip for b in blocks] == ["needs SLURM", None, None, None]
    assert [c.text for c in blocks[1].commands] == ["make sweep   # main", "python -m a \\\n  --b"]
    assert blocks[2].commands[0].server == "http://127.0.0.1:5000"
    console = blocks[3].commands[0]
    assert console.text == "python -m src.summary"
    assert console.expected == ["Sweep <x> 42 children", "...", "  rank 1"]


def test_output_lines_match_with_masks_and_tolerance(tmp_path: Path) -> None:
    output = (
        f"Run 'knn' (0123456789abcdef0123456789abcdef) FINISHED at sqlite:///{tmp_path}/outputs/m.db\n"
        "noise\n  cv_accuracy_mean = 0.8016 ± 0.0215 (4.9s elapsed)\n"
    )
    expected = [
        "Run 'knn' (28e33f0c85ed4c3ea40393be7a81906c) FINISHED at sqlite:////path/to/repo/outputs/m.db",
        "...",
        "  cv_accuracy_mean = 0.8020 ± 0.0215 (6.1s elapsed)",
    ]
    assert missing_lines(expected, output, tmp_path) == []
    assert missing_lines(["  cv_accuracy_mean = 0.9016 ± 0.0215"], output, tmp_path)
    assert missing_lines(["42 children"], "41 children", tmp_path)
