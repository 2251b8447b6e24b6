"""The Ray runner against a real Ray head, in a network namespace with only loopback.

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
    assert lines, f"the scenario printed no result (exit {done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    result = json.loads(lines[-1][len("RESULT "):])
    assert "error" not in result, result["error"] + "\n" + done.stderr[-3000:]
    return result


def test_a_sweep_runs_on_ray_two_at_a_time_and_leaves_what_a_local_run_leaves(scenario):
    sweep = scenario["sweep"]
    assert sweep["statuses"] == ["succeeded"] * 4 and sweep["runners"] == ["ray"] and not sweep["errors"]
    assert 1 <= sweep["most_at_once"] <= 2  # 2 CPUs, one per job
    assert all(s and s.startswith("fer-job-") for s in sweep["submissions"])
    assert sweep["local_status"] == "succeeded" and sweep["ray_files"] == sweep["local_files"]
    assert "succeeded" in sweep["ray_log"]  # jobs logs reads Ray's log
    assert sweep["run_log"].strip().endswith("succeeded")  # and the run keeps its own copy
    assert sweep["run_info"] == {"sweep": sweep["id"], "sweep_config": "tiny"}


def test_the_cluster_view(scenario):
    view = scenario["cluster"]
    assert (view["runner"], view["nodes"], view["cpus"], view["gpus"], view["slots"]) == ("ray", 1, 2.0, 0.0, 2)
    assert view["loopback"] and view["address"] == "http://127.0.0.1:8265"


def test_a_killed_ray_worker_is_interrupted_and_resumes_without_gaps(scenario):
    killed, resumed = scenario["killed"], scenario["resumed"]
    assert killed["status"] == "interrupted" and not killed["pid_alive"]
    assert "Ray: FAILED" in killed["error"] and "Resume the job" in killed["error"]
    assert resumed == {"status": "succeeded", "error": None, "attempt": 2, "epochs": [1, 2, 3, 4, 5, 6]}


def test_a_cancelled_ray_job_stops_on_the_cluster(scenario):
    cancelled = scenario["cancelled"]
    assert cancelled["status"] == "cancelled" and cancelled["ray"] in ("SUCCEEDED", "STOPPED")
    assert not cancelled["pid_alive"] and 1 <= cancelled["epochs"] < cancelled["total"]


def test_the_head_is_stopped_by_its_pid_and_leaves_nothing(scenario):
    assert scenario["left_behind"] == []
