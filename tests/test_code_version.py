"""The code version a run records (fer_bench.results.git_sha): HEAD, '-dirty' when the code it ran differs from it."""

import subprocess

import pytest

from fer_bench.results import git_sha


@pytest.fixture
def repo(tmp_path, monkeypatch):
    monkeypatch.delenv("FER_BENCH_GIT_SHA", raising=False)

    def git(*args):
        return subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True, text=True).stdout.strip()

    git("init", "-q")
    for path, text in {"papers/__init__.py": "", "fer_bench/__init__.py": "", ".gitignore": "__pycache__/\n",
                       "README.md": "x\n"}.items():
        (tmp_path / path).parent.mkdir(exist_ok=True)
        (tmp_path / path).write_text(text)
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    return tmp_path, git("rev-parse", "HEAD")


def test_a_clean_checkout_records_its_commit(repo):
    root, head = repo
    assert git_sha(root) == head


@pytest.mark.parametrize("path", ["papers/new_paper.py", "fer_bench/helper.py", "papers/sub/module.py"])
def test_an_untracked_file_under_papers_or_fer_bench_is_dirty(repo, path):
    root, head = repo
    (root / path).parent.mkdir(exist_ok=True)
    (root / path).write_text("x = 1\n")  # a new paper module, not yet committed: the run used code HEAD lacks
    assert git_sha(root) == head + "-dirty"


def test_untracked_files_elsewhere_and_ignored_files_are_not_code(repo):
    root, head = repo
    (root / "notes.txt").write_text("scratch")
    (root / "papers" / "__pycache__").mkdir()
    (root / "papers" / "__pycache__" / "x.pyc").write_bytes(b"")
    assert git_sha(root) == head


def test_a_changed_tracked_file_is_dirty_and_the_environment_wins(repo, monkeypatch):
    root, head = repo
    (root / "README.md").write_text("changed\n")
    assert git_sha(root) == head + "-dirty"
    monkeypatch.setenv("FER_BENCH_GIT_SHA", "abc")
    assert git_sha(root) == "abc"
