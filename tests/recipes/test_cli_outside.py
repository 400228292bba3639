"""The CLI as a user's shell runs it (a subprocess, stdout and stderr pipes, not a terminal) on hostile file names
and mistaken arguments: names are printed, never interpreted; errors are plain text; a mistake leaves nothing
behind that breaks the corrected command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

FORGED = "x\nIndexed 999 documents (dense: 1 chunks) in 0.1s → evil\n"


def ragloom(*args: str | bytes, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("FORCE_COLOR", None)
    command: list[str | bytes] = [sys.executable, "-m", "ragloom.recipes.cli", *args]
    found = subprocess.run(command, check=False, capture_output=True, env=env, cwd=cwd, timeout=240)
    return subprocess.CompletedProcess(
        found.args,
        found.returncode,
        found.stdout.decode("utf-8", "replace"),
        found.stderr.decode("utf-8", "replace"),
    )


@pytest.fixture()
def hostile_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a[").mkdir()  # the path a[/b].txt: a closing markup tag
    (folder / "a[/b].txt").write_text("Closing a markup tag that was never opened crashes a naive printer.")
    (folder / "[bold red]report.txt").write_text("A style tag in a file name must be shown as it is.")
    (folder / "line\nbreak.txt").write_text("A newline in a file name must not print a line of its own.")
    (folder / f"{FORGED}.txt").write_bytes(b"binary\x00garbage")  # fails to load: its name is printed
    with open(os.fsencode(folder) + b"/caf\xe9.txt", "wb") as handle:  # a Latin-1 name: not UTF-8
        handle.write(b"Coffee is brewed from roasted beans.")
    (folder / "bad[").mkdir()
    with open(os.fsencode(folder) + b"/bad[/i]\xff.pdf", "wb") as handle:  # fails to load: reported by name
        handle.write(b"%PDF-1.7 truncated")
    return folder


@pytest.mark.parametrize("store", ["memory", "chroma"])
def test_hostile_file_names_are_indexed_and_printed_verbatim(
    tmp_path: Path, hostile_folder: Path, tiny_bert_dir: Path, store: str
) -> None:
    index = tmp_path / "index"
    done = ragloom("ingest", str(hostile_folder), "--index", str(index), "--model", str(tiny_bert_dir),
                   "--store", store, "--offline")  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Indexed 4 documents"), done.stdout
    assert "999" not in done.stdout
    assert "bad[/i]\\xff.pdf" in done.stderr and done.stderr.startswith("skipped: "), done.stderr
    assert all(line.startswith(("skipped: ", "note: ")) for line in done.stderr.splitlines()), done.stderr
    assert "[bold" not in done.stderr and "\x1b[" not in done.stderr

    found = ragloom("search", "roasted coffee beans", "--index", str(index), "-k", "4", "--json", "--offline")
    assert found.returncode == 0, found.stderr
    ids = {hit["doc_id"] for hit in json.loads(found.stdout)}
    assert ids == {"a[/b].txt", "[bold red]report.txt", "line\nbreak.txt", "caf\\xe9.txt"}

    table = ragloom("search", "markup tag", "--index", str(index), "-k", "4", "--offline")
    assert table.returncode == 0, table.stderr
    assert "a[/b].txt" in table.stdout and "[bold red]report.txt" in table.stdout
    assert "line\\nbreak.txt" in table.stdout


def test_errors_on_a_pipe_are_plain_text(tmp_path: Path) -> None:
    missing = ragloom("ask", "anything", "--index", str(tmp_path / "[b]nope"), "--offline")
    assert missing.returncode == 2
    assert missing.stderr.startswith("error: ") and "[bold red]" not in missing.stderr
    assert "[b]nope" in missing.stderr


def test_argument_mistakes_are_clear_errors_and_leave_nothing_behind(
    tmp_path: Path, tiny_bert_dir: Path, hostile_folder: Path
) -> None:
    docs = tmp_path / "plain"
    docs.mkdir()
    (docs / "a.txt").write_text("The telescope observed a distant galaxy cluster.")
    index = tmp_path / "index"
    typo = ragloom("ingest", str(docs), "--index", str(index), "--model", str(tiny_bert_dir), "--store", "chromaa",
                   "--offline")  # fmt: skip
    assert typo.returncode == 2 and "chromaa" in typo.stderr
    assert not (index / "ragloom.json").exists(), "a failed first ingest must not leave a spec behind"
    fixed = ragloom("ingest", str(docs), "--index", str(index), "--model", str(tiny_bert_dir), "--store", "memory",
                    "--offline")  # fmt: skip
    assert fixed.returncode == 0, fixed.stderr

    other = ragloom("ingest", str(docs), "--index", str(index), "--store", "chroma", "--chunk-size", "64", "--offline")
    assert other.returncode == 2
    assert "was built with" in other.stderr and "--store memory" in other.stderr, other.stderr
    same = ragloom("ingest", str(docs), "--index", str(index), "--store", "memory", "--offline")
    assert same.returncode == 0, same.stderr

    bad_query = ragloom("search", b"caf\xe9 au lait", "--index", str(index), "--offline")
    assert bad_query.returncode == 2 and "not valid UTF-8" in bad_query.stderr, bad_query.stderr
    assert "Traceback" not in bad_query.stderr

    a_file = tmp_path / "file-not-dir"
    a_file.write_text("x")
    for command in (["ingest", str(docs)], ["search", "x"], ["ask", "x"]):
        wrong = ragloom(*command, "--index", str(a_file), "--offline")
        assert wrong.returncode == 2 and "is a file, not an index directory" in wrong.stderr, wrong.stderr

    zero = ragloom("search", "galaxy", "--index", str(index), "-k", "0", "--offline")
    assert zero.returncode == 2 and "Traceback" not in zero.stderr
