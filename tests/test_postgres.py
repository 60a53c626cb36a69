"""Several machines as one study: two independent workers on one PostgreSQL database.

Needs a server: ``.ci/run`` starts one with ``.ci/postgres.sh`` and exports its URL as
DPC_NAS_TEST_POSTGRES_URL; without it this test is skipped (with that message).
"""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from strategies.heartbeat import OWNER_KEY
from strategies.storage import open_storage

URL = os.environ.get("DPC_NAS_TEST_POSTGRES_URL")
pytestmark = pytest.mark.skipif(
    not URL,
    reason="no PostgreSQL server: set DPC_NAS_TEST_POSTGRES_URL (e.g. url=$(bash .ci/postgres.sh), as .ci/run does)",
)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def study_name():
    name = f"test-{uuid.uuid4().hex[:12]}"
    yield name
    try:
        optuna.delete_study(study_name=name, storage=open_storage(URL).storage)
    except KeyError:
        pass


def test_two_machines_share_one_study_with_an_exact_budget(study_name, tmp_path):
    """The README recipe: the same command on each machine, pointed at one database."""
    args = [sys.executable, "-m", "strategies.run", "--strategy", "evolution", "--population", "4", "--budget", "14",
            "--objective", "synthetic:slow,sleep=0.15", "--storage", URL, "--study", study_name, "--poll", "0.2",
            "--out-dir", str(tmp_path), "-q"]
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    machines = [subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for _ in range(2)]
    outputs = [m.communicate(timeout=180) for m in machines]
    for m, (out, err) in zip(machines, outputs):
        assert m.returncode == 0, err
        assert "14/14 trials used (14 complete, 0 failed)" in out

    study = optuna.load_study(study_name=study_name, storage=open_storage(URL).storage)
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == 14 and all(t.state == TrialState.COMPLETE for t in trials)
    assert sorted(t.number for t in trials) == list(range(14))
    assert len({t.user_attrs["genome"] for t in trials}) == 14  # no cell evaluated twice
    assert len({t.system_attrs[OWNER_KEY]["pid"] for t in trials}) == 2  # both did trials
    assert study.user_attrs["strategy_params"] == {"population": 4, "tournament": 2}


# One process imports everything, then forks every worker (three per database, ten databases);
# they all open their storage at one shared instant, when each new database has no tables yet:
# the race that failed CI on fresh machines. Forked after the imports, so thirty real processes
# cost no Python start-ups.
_STARTER = """
import os, sys, time, json
from strategies.run import main
import strategies.storage, sqlalchemy, psycopg2
urls, per_db, args = json.loads(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
start = time.time() + 1.0
pids = {}
for url in urls:
    for _ in range(per_db):
        pid = os.fork()
        if pid == 0:
            time.sleep(max(0.0, start - time.time()))
            os._exit(main([*args, "--storage", url]))
        pids[pid] = url
bad = []
for pid, url in pids.items():
    _, status = os.waitpid(pid, 0)
    if status != 0:
        bad.append(url.rsplit("/", 1)[1])
print(json.dumps(bad))
"""


def _admin():
    import psycopg2

    base, _db = URL.rsplit("/", 1)
    conn = psycopg2.connect(base + "/postgres")
    conn.autocommit = True
    return conn, base


def test_workers_starting_together_on_fresh_databases_all_succeed(tmp_path):
    """Ten new, empty databases; on each, three workers open the storage at the same instant."""
    import json

    conn, base = _admin()
    names = [f"dpc_nas_fresh_{uuid.uuid4().hex[:10]}" for _ in range(10)]
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    try:
        with conn.cursor() as cur:
            for name in names:
                cur.execute(f'CREATE DATABASE "{name}"')
        urls = [f"{base}/{name}" for name in names]
        args = ["--strategy", "random", "--budget", "4", "--objective", "synthetic", "--study", "fresh",
                "--poll", "0.2", "--out-dir", str(tmp_path), "-q"]
        run = subprocess.run([sys.executable, "-c", _STARTER, json.dumps(urls), "3", *args], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr[-2000:]
        failed = json.loads(run.stdout.strip().splitlines()[-1])
        assert failed == [], run.stderr[-2000:]
        for url in urls:
            study = optuna.load_study(study_name="fresh", storage=open_storage(url).storage)
            states = [t.state for t in study.get_trials(deepcopy=False)]
            assert states == [TrialState.COMPLETE] * 4, (url, states)  # exactly the budget
            assert study.user_attrs["strategy_params"] == {}
    finally:
        with conn.cursor() as cur:
            for name in names:
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()
