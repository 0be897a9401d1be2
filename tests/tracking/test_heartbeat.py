"""Heartbeats: every RUNNING run records that its process lives, so a run on another host whose
heartbeat stopped is known stale, and one whose heartbeat goes on is left alone."""

from __future__ import annotations

import os
import socket
import time

from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

from src.sweep.recovery import liveness
from src.tracking.heartbeat import HEARTBEAT_TAG, INTERVAL_TAG, Heartbeat, first_beat
from src.tracking.process import PROCESS_TAG, process_identity

from ..helpers import in_process

ELSEWHERE = "node-7.cluster:4242:99"  # a process on another host: /proc cannot tell


def runs(uri: str) -> tuple[MlflowClient, str]:
    client = MlflowClient(uri)
    return client, client.create_experiment("heart-classification")


def test_a_heartbeat_writes_on_its_interval_until_stopped(tracking_uri) -> None:
    client, experiment = runs(tracking_uri)
    run = client.create_run(experiment, tags=first_beat(0.2)).info.run_id
    first = int(client.get_run(run).data.tags[HEARTBEAT_TAG])
    beat = Heartbeat(tracking_uri, run, 0.2).start()
    time.sleep(1.5)
    beat.stop()
    stopped = client.get_run(run).data.tags[HEARTBEAT_TAG]
    assert int(stopped) > first  # beats landed while it ran
    time.sleep(0.6)
    assert client.get_run(run).data.tags[HEARTBEAT_TAG] == stopped  # and none after stop
    assert client.get_run(run).data.tags[INTERVAL_TAG] == "0.2"


def test_liveness_trusts_proc_here_and_the_heartbeat_elsewhere(tracking_uri) -> None:
    client, experiment = runs(tracking_uri)
    here = process_identity(os.getpid())
    gone = f"{socket.gethostname()}:{2**22 + 1}:1"  # above Linux's pid_max: never alive
    old = {INTERVAL_TAG: "1", HEARTBEAT_TAG: str(int(time.time()) - 10)}
    cases = {  # tags -> (stale?, what is said)
        "alive here, old heartbeat": ({PROCESS_TAG: here} | old, False, "its process is alive"),
        "gone here": ({PROCESS_TAG: gone} | first_beat(30), True, "ended without closing"),
        "elsewhere, beating": ({PROCESS_TAG: ELSEWHERE} | first_beat(30), False, "(every 30s)"),
        "elsewhere, stopped": ({PROCESS_TAG: ELSEWHERE} | old, True, "more than 3 intervals"),
        "elsewhere, older version": ({PROCESS_TAG: ELSEWHERE}, None, "no heartbeat"),
    }
    for name, (tags, stale, says) in cases.items():
        run = client.get_run(client.create_run(experiment, tags=tags).info.run_id)
        found, why = liveness(run)
        assert found is stale and says in why, (name, found, why)


def test_doctor_ends_a_stopped_heartbeat_elsewhere_and_keeps_a_live_one(tracking_uri) -> None:
    client, experiment = runs(tracking_uri)
    tags = {PROCESS_TAG: ELSEWHERE} | first_beat(1)
    stopped = client.create_run(experiment, run_name="killed on node 7", tags=tags)
    live = client.create_run(experiment, run_name="alive on node 7", tags=tags)
    older = client.create_run(experiment, run_name="older version", tags={PROCESS_TAG: ELSEWHERE})
    beat = Heartbeat(tracking_uri, live.info.run_id, 1).start()
    try:
        time.sleep(4.5)  # more than 3 intervals since the stopped one's last beat
        result = in_process(tracking_uri, "src.doctor", "--fix", "data=heart")
    finally:
        beat.stop()
    assert result.returncode == 0, result.stdout
    lines = {line.split("'")[1]: line for line in result.stdout.splitlines() if "RUNNING '" in line}
    assert (
        "STALE" in lines["killed on node 7"] and "ended FAILED (--fix)" in lines["killed on node 7"]
    )
    assert "STALE" not in lines["alive on node 7"] and "last heartbeat" in lines["alive on node 7"]
    assert "no heartbeat (an older version made it): cannot tell" in lines["older version"]
    ended = client.get_run(stopped.info.run_id)
    assert ended.info.status == "FAILED" and ended.data.tags["error_type"] == "Stale"
    assert "more than 3 intervals" in ended.data.tags["error_message"]
    assert client.get_run(live.info.run_id).info.status == "RUNNING"
    assert client.get_run(older.info.run_id).info.status == "RUNNING"  # never ended on a guess
    assert len(client.search_runs([experiment], run_view_type=ViewType.ALL)) == 3
