"""The SessionEnd export (issue 11): with ``export_on_session_end`` set, a session that ends leaves
its project's telemetry as shards in that folder of the project: through the daemon when one runs,
else by the hook itself. A real Claude Code transcript of the corpus, moved to a project folder here."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import FIXTURES, Daemon
from golem_mcp.store import Store
from golem_mcp.store.shards import import_shards
from test_hook import run_hook

WF = "wf-003"
TRUTH = json.loads((FIXTURES / "truth.json").read_text())[WF]
SESSION = TRUTH["session_id"]
TOKENS = ("input", "output", "cache_read", "cache_write")


def _project(tmp_path: Path) -> tuple[Path, dict]:
    """A git work tree that the corpus' wf-003 session ran in (its transcript's cwd rewritten to it),
    and that session's SessionEnd payload, run from a subfolder of the tree."""
    proj = tmp_path / "repo"
    (proj / ".git").mkdir(parents=True)
    (proj / "src").mkdir()
    src = FIXTURES / "home" / ".claude" / "projects" / f"-home-dev-work-{WF}"
    dst = tmp_path / "claude" / "projects" / "-repo"
    shutil.copytree(src, dst)
    for f in dst.rglob("*.jsonl"):
        f.write_text(f.read_text().replace(f"/home/dev/work/{WF}", str(proj / "src")))
    payload = {"session_id": SESSION, "transcript_path": str(dst / f"{SESSION}.jsonl"), "cwd": str(proj / "src"),
               "hook_event_name": "SessionEnd", "reason": "other"}
    return proj, payload


def _check_shards(folder: Path, tmp_path: Path) -> None:
    files = sorted(folder.iterdir())
    assert files and all(f.suffix == ".parquet" for f in files), files
    with Store(tmp_path / "other.duckdb") as store:
        res = import_shards(store, [folder])
        assert res["skipped"] == []
        got = {r["stage"]: r for r in store.query(
            "SELECT stage, count(*) AS requests, sum(input_tokens) AS input, sum(output_tokens) AS output, "
            "sum(cache_read_tokens) AS cache_read, sum(cache_creation_tokens) AS cache_write FROM requests "
            "GROUP BY 1")}
    assert {s: {k: got[s][k] for k in ("requests", *TOKENS)} for s in got} == {
        s: {k: v[k] for k in ("requests", *TOKENS)} for s, v in TRUTH["stages"].items()}


def test_without_a_daemon_the_hook_exports_itself(golem_home: Path, tmp_path: Path) -> None:
    proj, payload = _project(tmp_path)
    r = run_hook(golem_home, payload, env={"GOLEM_EXPORT_ON_SESSION_END": ".golem/telemetry"})
    assert r.returncode == 0 and r.stdout == b""
    assert not (golem_home / "hook-errors.log").exists()
    _check_shards(proj / ".golem" / "telemetry", tmp_path)


def test_with_a_daemon_it_exports_and_settings_json_turns_it_on(golem_home: Path, tmp_path: Path,
                                                                start_daemon: Callable[..., Daemon]) -> None:
    (golem_home / "settings.json").write_text(json.dumps({"export_on_session_end": ".golem/telemetry"}))
    d = start_daemon()
    proj, payload = _project(tmp_path)
    r = run_hook(golem_home, payload)
    assert r.returncode == 0 and r.stdout == b""
    assert not (golem_home / "hook-errors.log").exists()
    d.stop()
    _check_shards(proj / ".golem" / "telemetry", tmp_path)


def test_no_setting_no_export(golem_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOLEM_EXPORT_ON_SESSION_END", raising=False)
    proj, payload = _project(tmp_path)
    assert run_hook(golem_home, payload).returncode == 0
    assert not (proj / ".golem").exists()


def test_export_and_import_go_through_a_running_daemon(golem_home: Path, tmp_path: Path,
                                                      start_daemon: Callable[..., Daemon]) -> None:
    import os
    import subprocess
    import sys

    d = start_daemon()
    proj, payload = _project(tmp_path)
    env = {**os.environ, "GOLEM_HOME": str(golem_home)}

    def cli(*argv: str) -> str:
        r = subprocess.run([sys.executable, "-m", "golem_mcp", *argv], env=env, capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 0, r.stderr
        return r.stdout

    cli("import", str(Path(payload["transcript_path"]).parent))
    out = json.loads(cli("export", str(tmp_path / "shards"), "--format", "json"))
    assert out["rows"]["api_requests"] == sum(s["requests"] for s in TRUTH["stages"].values())
    # the daemon holds the store: a second daemon-side import of the same shards merges nothing new
    merged = json.loads(cli("import", str(tmp_path / "shards"), "--format", "json"))
    assert merged["shards"] == len(out["files"]) and merged["skipped"] == []
    assert json.loads(cli("export", str(tmp_path / "shards"), "--format", "json"))["files"] == []
    d.stop()
