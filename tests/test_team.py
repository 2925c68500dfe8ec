"""The team store on DuckLake, against a real PostgreSQL this test starts and a real data folder.

Three daemons (separate data folders, machine ids m1-m3) each ingest a part of the real Claude Code
corpus (wf-005's main session on one machine, its subagents on another; OTel and hooks on a third)
and push to the team store at the same time; one is killed -9 while pushing and restarted. A fourth
daemon runs ``serve --team``: through the real MCP client every workflow x stage equals truth.json,
totals equal the union, and no fact is there twice.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from conftest import FIXTURES, Daemon, api, launch_daemon, mcp_http
from golem_mcp.config import Settings
from golem_mcp.ingestion.importer import Importer
from golem_mcp.store import Store
from golem_mcp.store.batch import Batch
from golem_mcp.store.rollups import SPECS, differences
from golem_mcp.store.team import (
    SEEN_KEY,
    TeamStore,
    TeamUnavailable,
    compact,
    connect,
    open_team_store,
    push,
    team_config,
)
from support import sightings
from support.fixture_data import TOKENS, token_counts
from support.tables import by, rows

PG_BIN = Path(os.environ.get("GOLEM_TEST_PG_BIN") or next(
    (str(p.parent) for p in sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))), "/usr/lib/postgresql/15/bin"))
TRUTH = json.loads((FIXTURES / "truth.json").read_text())
PROJECTS = FIXTURES / "home" / ".claude" / "projects"

pytestmark = pytest.mark.skipif(not (PG_BIN / "initdb").exists(),
                                reason=f"PostgreSQL binaries not found in {PG_BIN} (set GOLEM_TEST_PG_BIN)")


def _as_postgres(*cmd: str) -> list[str]:
    """PostgreSQL refuses to run as root: as root (CI), commands run as the postgres user."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else list(cmd)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def postgres() -> Iterator[dict[str, str]]:
    """A PostgreSQL server of its own in a temporary folder (unix socket there), stopped at the end.
    The folder is a top-level temp folder: as root, the postgres user must reach it (pytest's own are 0700)."""
    root = Path(tempfile.mkdtemp(prefix="golem-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    data, port = root / "data", _free_port()
    subprocess.run(_as_postgres(str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"),
                   check=True, capture_output=True, timeout=120)
    subprocess.run(_as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-w", "-t", "60", "-l", str(root / "log"),
                                "-o", f"-p {port} -k {root} -c listen_addresses=''", "start"),
                   check=True, capture_output=True, timeout=90)
    try:
        yield {"host": str(root), "port": str(port), "root": str(root)}
    finally:
        subprocess.run(_as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"),
                       capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


_N = iter(range(1000))


@pytest.fixture
def team_env(postgres: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A fresh catalog database and data folder; the environment that names them."""
    db = f"golem{next(_N)}"
    subprocess.run(_as_postgres(str(PG_BIN / "createdb"), "-h", postgres["host"], "-p", postgres["port"],
                                "-U", "postgres", db), check=True, capture_output=True, timeout=60)
    data = tmp_path / "team-data"
    data.mkdir()
    env = {"GOLEM_TEAM_URL": f"ducklake:postgres:dbname={db} host={postgres['host']} port={postgres['port']} "
                             "user=postgres",
           "GOLEM_TEAM_DATA_PATH": str(data)}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("GOLEM_HOME", str(tmp_path / "home"))
    return env


def _truth() -> dict[tuple[str, str], dict[str, int]]:
    return {(wf, stage): {"requests": s["requests"], **{k: s[k] for k in TOKENS}}
            for wf, t in TRUTH.items() for stage, s in t["stages"].items()}


def _parts(root: Path) -> dict[str, list[Path]]:
    """The corpus split over three machines: wf-005's main session on m1 and its subagents on m2."""
    wf5 = PROJECTS / "-home-dev-work-wf-005"
    (session,) = [p for p in wf5.iterdir() if p.is_dir()]
    parts: dict[str, list[Path]] = {
        "m1": [PROJECTS / f"-home-dev-work-wf-00{i}" for i in (1, 2, 3, 4)] + [wf5 / f"{session.name}.jsonl"],
        "m2": [session] + [PROJECTS / f"-home-dev-work-wf-00{i}" for i in (6, 7, 8)],
        "m3": [FIXTURES / "otlp", FIXTURES / "hooks.jsonl"],
    }
    out: dict[str, list[Path]] = {}
    for m, paths in parts.items():  # copies, so each machine reads its own folder
        out[m] = []
        for p in paths:
            dest = root / m / p.relative_to(FIXTURES)
            dest.parent.mkdir(parents=True, exist_ok=True)
            (shutil.copytree if p.is_dir() else shutil.copyfile)(p, dest)
            out[m].append(dest)
    return out


# wf-005's requests by stage and the machine each names: its main session's on m1 and its subagents'
# on m2 (their transcripts), though m3's OTel saw every one of them too: a transcript names a
# machine before OTel (store.db.SOURCE_RANK), whatever order the pushes merged in
WF5_MACHINES_SQL = ("SELECT stage, machine_id, count(*) FROM requests WHERE workflow_id = 'wf-005' "
                    "GROUP BY ALL ORDER BY ALL")


def _wf5_machines() -> list[list[Any]]:
    return sorted([stage, "m1" if stage == "main" else "m2", s["requests"]]
                  for stage, s in TRUTH["wf-005"]["stages"].items())


def _stage_rows(store: Any) -> dict[tuple[str, str], dict[str, int]]:
    return token_counts(store, ("workflow_id", "stage"))  # type: ignore[return-value]


# -- the library: push and read ------------------------------------------------------------------
def test_pushes_from_three_stores_read_back_as_truth_and_pushing_again_adds_nothing(team_env, tmp_path):
    cfg = team_config()
    parts = _parts(tmp_path / "corpus")
    for m, paths in parts.items():
        os.environ["GOLEM_MACHINE"] = m
        try:
            with Store(tmp_path / f"{m}.duckdb") as s:
                Importer(s).run(paths)
                assert push(s, cfg).total > 0
                assert push(s, cfg).total == 0  # everything is there: nothing is sent twice
        finally:
            del os.environ["GOLEM_MACHINE"]
    with open_team_store() as team:
        assert _stage_rows(team) == _truth()
        # wf-005's stages were seen on two machines (main on m1, subagents on m2): one whole workflow
        assert [list(r) for r in team.con.execute(WF5_MACHINES_SQL).fetchall()] == _wf5_machines()
        dups = team.scalar("SELECT count(*) - count(DISTINCT request_id) FROM api_requests")
        assert dups == 0
        # the team server cannot be written, nor can agents' SQL reach files or the lake
        with pytest.raises(Exception, match="read here"):
            team.write(Batch(rows={"machines": [{"machine_id": "x"}]}))
        with pytest.raises(Exception, match="disabled by configuration|locked"):
            team.con.execute("SELECT * FROM read_csv('/etc/passwd')")
        with pytest.raises(Exception, match="team"):
            team.con.execute("SELECT * FROM team.api_requests")
    # the CLI: push sends only the machine's row (opening a store notes the machine as seen now);
    # report --team answers for every machine
    cli = [sys.executable, "-m", "golem_mcp"]
    out = subprocess.run([*cli, "push", "--db", str(tmp_path / "m1.duckdb"), "--format", "json"], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert set(json.loads(out.stdout)["rows"]) <= {"machines"}
    out = subprocess.run([*cli, "report", "--team", "--by", "workflow", "--format", "json"], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert sorted(r["workflow"] for r in json.loads(out.stdout)) == sorted(TRUTH)


@pytest.mark.parametrize("order", [("m1", "m2", "m3"), ("m3", "m2", "m1"), ("m2", "m3", "m1")])
def test_a_fact_pushed_by_several_machines_names_the_same_machine_whatever_the_order(team_env, tmp_path, order):
    """The same facts seen on three machines by different sources (support.sightings), pushed in
    different orders: the lake's MERGE, the replica's refresh by delta (the second push arrives after
    the replica was built) and a replica built whole all name the machine the rule picks."""
    cfg = team_config()
    stores = {m: Store(tmp_path / f"{m}.duckdb", machine=(m, m)) for m in order}
    try:
        for m, s in stores.items():
            s.write(sightings.batch(sightings.of(m)))
        assert push(stores[order[0]], cfg).total > 0
        with open_team_store() as team:  # built whole after the first push, then refreshed by delta
            for m in order[1:]:
                assert push(stores[m], cfg).total > 0
                team.refresh()
            assert sightings.named(team.con) == sightings.EXPECTED
            _rollups_agree(team)
        with TeamStore(cfg, path=tmp_path / "whole.duckdb") as whole:
            assert whole.last_refresh is not None and whole.last_refresh.whole
            assert sightings.named(whole.con) == sightings.EXPECTED
        lake = connect(cfg, read_only=True)
        try:
            assert sightings.named(lake, "team") == sightings.EXPECTED
        finally:
            lake.close()
        # pushing again sends nothing, and a machine's own store still names itself for what it saw
        assert all(push(s, cfg).total == 0 for s in stores.values())
        assert set(sightings.named(stores["m1"].con).values()) == {"m1"}
    finally:
        for s in stores.values():
            s.close()


def test_a_push_is_resumed_after_a_crash_before_its_watermark_moved(team_env, tmp_path, monkeypatch):
    """The lake commit happened but the process died before the local watermark moved: the next
    push sends the same rows again, and they merge into the same facts (none doubled)."""
    cfg = team_config()
    with Store(tmp_path / "a.duckdb") as s:
        Importer(s).run([PROJECTS / "-home-dev-work-wf-001"])
        first = push(s, cfg)
        with s.reader() as cur:
            cur.execute("DELETE FROM change_watermarks")  # as if the watermark had never been written
        again = push(s, cfg)
        assert again.rows == first.rows
    con = connect(cfg)
    try:
        n, distinct = con.execute("SELECT count(*), count(DISTINCT request_id) FROM team.api_requests").fetchone()
    finally:
        con.close()
    assert n == distinct == sum(t["requests"] for t in TRUTH["wf-001"]["stages"].values())


def test_compaction_merges_small_pushes_and_keeps_every_fact(team_env, tmp_path):
    """The daemon compacts the lake every minute; a step that fails is only logged there, so here it
    runs directly: small pushes become fewer files, old snapshots go, and every fact reads the same."""
    cfg = team_config()
    with Store(tmp_path / "a.duckdb") as s:
        for wf in ("001", "002", "003"):
            Importer(s).run([PROJECTS / f"-home-dev-work-wf-{wf}"])
            assert push(s, cfg).total > 0
    con = connect(cfg)
    try:
        def facts() -> list[tuple[Any, ...]]:
            return con.execute("SELECT request_id, input_tokens, output_tokens FROM team.api_requests "
                               "ORDER BY request_id").fetchall()

        def files() -> int:
            return int(con.execute("SELECT count(*) FROM ducklake_list_files('team', 'api_requests')").fetchone()[0])

        before, files_before = facts(), files()
        assert len(before) == sum(t["requests"] for wf in ("wf-001", "wf-002", "wf-003")
                                  for t in TRUTH[wf]["stages"].values())
        compact(con, keep_snapshots_s=0)
        assert facts() == before
        assert files() <= max(1, files_before)
        compact(con, keep_snapshots_s=0)  # nothing left to do is not an error
    finally:
        con.close()


def test_misconfigured_or_unreachable_team_store_says_what_to_do(team_env, tmp_path, monkeypatch):
    monkeypatch.setenv("GOLEM_TEAM_DATA_PATH", str(tmp_path / "nowhere"))
    with pytest.raises(TeamUnavailable, match="not a folder"):
        team_config()
    monkeypatch.delenv("GOLEM_TEAM_DATA_PATH")
    with pytest.raises(TeamUnavailable, match="GOLEM_TEAM_DATA_PATH is not"):
        team_config()
    monkeypatch.setenv("GOLEM_TEAM_DATA_PATH", str(tmp_path / "team-data"))
    monkeypatch.setenv("GOLEM_TEAM_URL", "ducklake:postgres:dbname=golem host=127.0.0.1 port=1 user=postgres")
    with pytest.raises(TeamUnavailable, match="cannot open the team store.*PostgreSQL runs"):
        connect(team_config())
    monkeypatch.delenv("GOLEM_TEAM_URL")
    monkeypatch.delenv("GOLEM_TEAM_DATA_PATH")
    assert team_config(Settings.load(), required=False) is None


# -- daemons: concurrent pushes, a kill -9, serve --team ---------------------------------------
async def _stage_answers(c: Any) -> dict[tuple[str, str], dict[str, int]]:
    """Every workflow x stage through the MCP tool, as _truth() has them."""
    res = await c.call_tool("query_workflow_cost", {"group_by": ["workflow", "stage"], "since": "2000-01-01",
                                                    "limit": 200})
    assert not res.is_error, res.content
    return {(g["workflow"], g["stage"]): {"requests": g["requests"], "input": g["input_tokens"],
                                          "output": g["output_tokens"], "cache_read": g["cache_read_tokens"],
                                          "cache_write": g["cache_creation_tokens"]}
            for g in rows(res.structured_content["groups"])}


def _daemon(home: Path, env: dict[str, str], machine: str, *extra: str) -> Daemon:
    home.mkdir(parents=True, exist_ok=True)
    return launch_daemon(home, home / "golem.duckdb", *extra,
                         env={**env, "GOLEM_MACHINE": machine, "GOLEM_TEAM_PUSH_SECONDS": "0.5",
                              # compaction meets pushes: its commit conflicts are retried too
                              "GOLEM_TEAM_COMPACT_SECONDS": "3"})


def _lake_requests(cfg: Any) -> tuple[int, int]:
    con = connect(cfg, read_only=True)
    try:
        with contextlib.suppress(Exception):  # no table yet: nothing pushed
            return tuple(con.execute("SELECT count(*), count(DISTINCT request_id) FROM team.api_requests").fetchone())
        return (0, 0)
    finally:
        con.close()


async def test_three_daemons_push_at_once_one_killed_and_serve_team_answers_truth(team_env, tmp_path):
    cfg = team_config()
    parts = _parts(tmp_path / "corpus")
    homes = {m: tmp_path / m for m in parts}
    daemons = {m: _daemon(homes[m], team_env, m) for m in parts}
    served: Daemon | None = None
    try:
        for m, d in daemons.items():  # each ingests its part; each pushes by itself, all at once
            r = api.post(d.url + "/api/import", json={"paths": [str(p) for p in parts[m]]}, timeout=300)
            assert r.status_code == 200, r.text
        # m3 holds most rows: kill it -9 while its pushes are under way (one push of its part takes
        # seconds, and one starts every 0.5 s), then start it again
        time.sleep(1.5)
        daemons["m3"].proc.send_signal(signal.SIGKILL)
        daemons["m3"].proc.wait(30)
        daemons["m3"] = _daemon(homes["m3"], team_env, "m3")
        expected = sum(s["requests"] for t in TRUTH.values() for s in t["stages"].values())
        deadline = time.monotonic() + 180
        while _lake_requests(cfg)[1] < expected and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(2)  # the last context rows of a push land with its requests; one more round
        count, distinct = _lake_requests(cfg)
        assert count == distinct == expected  # every request, none doubled

        served = _daemon(tmp_path / "team-server", team_env, "reader", "--team")
        async with Client(mcp_http(served.url)) as c:
            # the requests counted above may all be m1's and m2's (m3's OTel has the same request ids):
            # m3's context (workflow ids) can land after the server started, and it follows the pushes
            deadline = time.monotonic() + 180
            while await _stage_answers(c) != _truth() and time.monotonic() < deadline:
                time.sleep(0.5)
            for wf, t in TRUTH.items():  # every workflow x stage, exact
                res = await c.call_tool("query_workflow_cost", {"workflow_id": wf, "group_by": ["stage"],
                                                                "since": "2000-01-01"})
                assert not res.is_error, res.content
                out = res.structured_content
                got = {stage: {"requests": g["requests"], "input": g["input_tokens"], "output": g["output_tokens"],
                               "cache_read": g["cache_read_tokens"], "cache_write": g["cache_creation_tokens"]}
                       for stage, g in by(out["groups"], "stage").items()}
                assert got == {stage: {k: s[k] for k in ("requests", *TOKENS)} for stage, s in t["stages"].items()}, wf
            total = (await c.call_tool("query_workflow_cost", {"group_by": ["workflow"], "since": "2000-01-01"})).structured_content
            assert total["total"]["requests"] == expected
            assert total["total"]["cost_usd"] == pytest.approx(sum(t["total_cost_usd"] for t in TRUTH.values()), abs=1e-3)
            # wf-005 ran on two machines (main session on m1, subagents on m2) and is one whole workflow
            whole = (await c.call_tool("query_workflow_cost", {"workflow_id": "wf-005", "group_by": ["stage"]})).structured_content
            assert whole["total"]["requests"] == sum(s["requests"] for s in TRUTH["wf-005"]["stages"].values())
            # its requests name the machine whose transcripts saw them (m1 the main session's, m2 the
            # subagents'), though m3's OTel saw them too and the three pushes raced
            seen = (await c.call_tool("query_sql", {"sql": WF5_MACHINES_SQL})).structured_content
            assert [list(r) for r in seen["rows"]] == _wf5_machines()
        # the JSON API and the dashboard answer from the team store too
        report = api.post(served.url + "/api/report", json={"by": ["workflow"]}, timeout=600).json()
        assert sorted(r["workflow"] for r in report) == sorted(TRUTH)
        assert api.get(served.url + "/", timeout=600).status_code == 200
    finally:
        for d in [*daemons.values(), *([served] if served else [])]:
            d.stop()


# -- keeping current: what machines push after the team server started ---------------------------
def _push_part(tmp_path: Path, machine: str, paths: list[Path]) -> None:
    os.environ["GOLEM_MACHINE"] = machine
    try:
        with Store(tmp_path / f"{machine}.duckdb") as s:
            Importer(s).run(paths)
            assert push(s, team_config()).total > 0
    finally:
        del os.environ["GOLEM_MACHINE"]


def _rollups_agree(store: Any) -> None:
    for fact in SPECS:
        assert differences(store.con, fact) == [], fact


def test_the_replica_follows_pushes_by_delta_and_catches_up_after_a_restart(team_env, tmp_path):
    """A refresh reads only the rows of pushes it has not seen, re-resolves what their context
    concerns (wf-005's subagents arriving from m2 after its main session from m1) and keeps the
    rollups equal to the facts; a replica opened again catches up without copying the lake again."""
    parts = _parts(tmp_path / "corpus")
    _push_part(tmp_path, "m1", parts["m1"])
    with open_team_store() as team:
        assert team.last_refresh is not None and team.last_refresh.whole
        first = team.scalar("SELECT count(*) FROM api_requests")
        assert team.refresh().rows == {}  # nothing pushed since: nothing read
        _push_part(tmp_path, "m2", parts["m2"])
        got = team.refresh()
        assert not got.whole and got.rows["api_requests"] > 0
        assert team.scalar("SELECT count(*) FROM api_requests") == first + got.rows["api_requests"]
        _rollups_agree(team)
    _push_part(tmp_path, "m3", parts["m3"])
    with open_team_store() as team:  # the replica kept between starts: only m3's pushes are read
        assert team.last_refresh is not None and not team.last_refresh.whole
        assert set(team.last_refresh.rows) >= {"api_requests"}
        assert _stage_rows(team) == _truth()
        assert team.scalar("SELECT count(*) - count(DISTINCT request_id) FROM api_requests") == 0
        _rollups_agree(team)
        # a replica built whole from the same lake holds the same resolved facts
        with TeamStore(team.team, path=tmp_path / "whole.duckdb") as whole:
            assert whole.last_refresh is not None and whole.last_refresh.whole
            cols = "request_id, r_workflow_id, r_stage, r_top_stage, r_agent, r_task_id, r_cost_usd, machine_id"
            assert (whole.query(f"SELECT {cols} FROM api_requests ORDER BY request_id")
                    == team.query(f"SELECT {cols} FROM api_requests ORDER BY request_id"))
            # a lake whose push counter went back (made anew): the replica is built whole again and
            # put in place of the open one, which then answers from it
            with whole._lock:
                whole.con.execute("UPDATE settings SET value = '1000000' WHERE key = ?", [SEEN_KEY])
                whole.con.execute("DELETE FROM api_requests")
            again = whole.refresh()
            assert again.whole and again.pushes == team.pushes_seen()
            assert whole.pushes_seen() == again.pushes
            assert (whole.query(f"SELECT {cols} FROM api_requests ORDER BY request_id")
                    == team.query(f"SELECT {cols} FROM api_requests ORDER BY request_id"))
            _rollups_agree(whole)
            assert not [*tmp_path.glob("whole.duckdb.building*"), *tmp_path.glob("whole.duckdb.building.tmp")]


async def test_what_is_pushed_while_serve_team_runs_is_answered_within_seconds(team_env, tmp_path):
    """serve --team running, other machines push: the answer through MCP changes within seconds
    (the time is printed, not asserted: bench/ measures) and is then exact, with no duplicates."""
    parts = _parts(tmp_path / "corpus")
    _push_part(tmp_path, "m1", parts["m1"])
    served = _daemon(tmp_path / "team-server", {**team_env, "GOLEM_TEAM_REFRESH_SECONDS": "0.5"}, "reader", "--team")
    try:
        async with Client(mcp_http(served.url)) as c:
            before = await _stage_answers(c)
            assert before != _truth()  # m1 alone: wf-006..008 and wf-005's subagents are not there yet
            for m in ("m2", "m3"):
                _push_part(tmp_path, m, parts[m])
            pushed = time.monotonic()
            deadline = pushed + 120
            while (now := await _stage_answers(c)) != _truth() and time.monotonic() < deadline:
                time.sleep(0.2)
            print(f"serve --team answered the pushes exactly {time.monotonic() - pushed:.1f} s after them")
            assert now == _truth()
            dup = (await c.call_tool("query_sql", {"sql": "SELECT count(*) - count(DISTINCT request_id) "
                                                          "FROM api_requests"})).structured_content
            assert dup["rows"][0][0] == 0
        # report --team on the server's machine goes through it (it holds the replica)
        out = subprocess.run([sys.executable, "-m", "golem_mcp", "report", "--team", "--by", "workflow", "--format", "json"],
                             capture_output=True, text=True, timeout=300,
                             env={**os.environ, "GOLEM_HOME": str(tmp_path / "team-server")})
        assert out.returncode == 0, out.stderr
        assert sorted(r["workflow"] for r in json.loads(out.stdout)) == sorted(TRUTH)
    finally:
        served.stop()
    # the server's replica: its rollups equal the facts after every delta
    (replica,) = (tmp_path / "team-server" / "team").glob("replica-*.duckdb")
    with Store(replica, read_only=True) as r:
        _rollups_agree(r)
