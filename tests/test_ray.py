"""The Ray runner against a real two-node Ray cluster, in a network namespace with only loopback.

``tests/ray_scenario.py`` does the work (see its docstring); this test launches it with
``unshare -n`` so that none of Ray's traffic can reach another address (Ray's agents open
connections to the machine's outward address even when told 127.0.0.1), and checks what it
reports. Without Ray installed it is skipped (Ray is optional); without the right to make a
network namespace it is skipped too, unless ``FER_REQUIRE_RAY=1`` (CI), where it fails.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCENARIO = Path(__file__).resolve().parent / "ray_scenario.py"


def _skip_or_fail(why: str):
    if os.environ.get("FER_REQUIRE_RAY") == "1":
        pytest.fail(why)
    pytest.skip(why)


@pytest.fixture(scope="module")
def scenario() -> dict:
    if importlib.util.find_spec("ray") is None:
        _skip_or_fail("Ray is not installed (pip install -r requirements-optional.txt)")
    unshare = shutil.which("unshare")
    probe = subprocess.run([unshare, "-n", "true"], capture_output=True) if unshare else None
    if probe is None or probe.returncode != 0:
        _skip_or_fail("cannot create a network namespace (unshare -n needs root or user namespaces)")
    env = {k: v for k, v in os.environ.items() if k not in ("FER_RAY_ADDRESS", "RAY_ADDRESS")}
    done = subprocess.run([unshare, "-n", sys.executable, str(SCENARIO)], capture_output=True, text=True, timeout=540,
                          env=env)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    print(lines[-1] if lines else "")
    assert lines, f"the scenario printed no result (exit {done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    result = json.loads(lines[-1][len("RESULT "):])
    assert "error" not in result, result["error"] + "\n" + done.stderr[-3000:]
    return result


def test_a_sweep_runs_on_both_nodes_and_leaves_what_a_local_run_leaves(scenario):
    sweep = scenario["sweep"]
    assert sweep["statuses"] == ["succeeded"] * 4 and sweep["runners"] == ["ray"] and not sweep["errors"]
    assert 1 <= sweep["most_at_once"] <= 2  # 2 nodes of 1 CPU, one per job
    assert sweep["node_ids"] == sorted(scenario["nodes"].values())  # it landed on both nodes
    assert sweep["local_node"] and sweep["local_node"] not in scenario["nodes"].values()  # the host
    assert all(s and s.startswith("fer-job-") for s in sweep["submissions"])
    assert sweep["local_status"] == "succeeded" and sweep["ray_files"] == sweep["local_files"]
    assert "succeeded" in sweep["ray_log"]  # jobs logs reads Ray's log
    assert sweep["run_log"].strip().endswith("succeeded")  # and the run keeps its own copy
    assert sweep["run_info"] == {"sweep": sweep["id"], "sweep_config": "tiny"}


def test_no_worker_on_the_cluster_ever_opens_the_job_store(scenario):
    watch = scenario["store_watch"]
    assert watch["workers_seen"] >= 6 and watch["store_opened"] == []


def test_the_cluster_view(scenario):
    view = scenario["cluster"]
    assert (view["runner"], view["nodes"], view["cpus"], view["gpus"], view["slots"]) == ("ray", 2, 2.0, 0.0, 2)
    assert sorted(view["node_ids"]) == sorted(scenario["nodes"].values())
    assert view["loopback"] and view["address"] == "http://127.0.0.1:8265" and view["free_cpus"] is not None


def test_a_node_lost_mid_job_costs_only_a_resume_on_the_other_node(scenario):
    lost, resumed, nodes = scenario["lost"], scenario["resumed"], scenario["nodes"]
    assert lost["status"] == "interrupted" and lost["node_id"] == nodes["second"] and lost["worker_ended"]
    assert "Resume the job" in lost["error"] and 2 <= lost["epoch_when_lost"] < 40
    assert resumed == {"status": "succeeded", "error": None, "attempt": 2, "node_id": nodes["head"],
                       "epochs": list(range(1, 41))}
    assert scenario["cluster_after"] == {"nodes": 1}


def test_a_cancelled_ray_job_stops_on_the_cluster(scenario):
    cancelled = scenario["cancelled"]
    assert cancelled["status"] == "cancelled" and cancelled["ray"] in ("SUCCEEDED", "STOPPED")
    assert not cancelled["pid_alive"] and 1 <= cancelled["epochs"] < cancelled["total"]


def test_a_job_that_ends_while_the_app_is_away_is_picked_up_when_it_looks(scenario):
    away = scenario["app_away"]
    assert away["ray"] == "SUCCEEDED" and away["before"] == ["running", 0]
    assert away["after"] == ["succeeded", 3, 3] and away["error"] is None and away["epochs"] == [1, 2, 3]


def test_the_nodes_are_stopped_by_their_pids_and_leave_nothing(scenario):
    assert scenario["left_behind"] == []
