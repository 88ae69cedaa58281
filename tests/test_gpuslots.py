"""GPU slot allocation for profiles/local (hpstudy.gpuslots): no GPU needed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hpstudy import gpuslots


def fake_proc(tmp_path: Path, n: int) -> Path:
    proc = tmp_path / "proc-gpus"
    proc.mkdir()
    for i in range(n):
        (proc / f"0000:{i:02x}:00.0").mkdir()
    return proc


def env_for(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"HPSTUDY_GPU_LOCK_DIR": str(tmp_path / "locks"), **extra}


def test_visible_gpus_from_cuda_visible_devices():
    assert gpuslots.visible_gpus({"CUDA_VISIBLE_DEVICES": "2,3"}) == ["2", "3"]
    assert gpuslots.visible_gpus({"CUDA_VISIBLE_DEVICES": "GPU-ab12, MIG-cd34"}) == [
        "GPU-ab12",
        "MIG-cd34",
    ]
    assert gpuslots.visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []
    # CUDA ignores everything from the first invalid entry on
    assert gpuslots.visible_gpus({"CUDA_VISIBLE_DEVICES": "1,-1,2"}) == ["1"]


def test_visible_gpus_detected_without_cuda(tmp_path):
    assert gpuslots.visible_gpus({}, proc_dir=fake_proc(tmp_path, 3)) == ["0", "1", "2"]


def test_slot_count(tmp_path):
    proc = fake_proc(tmp_path, 2)
    assert gpuslots.slot_count({}, proc) == 2
    assert gpuslots.slot_count({"HPSTUDY_JOBS_PER_GPU": "3"}, proc) == 6
    assert gpuslots.slot_count({"CUDA_VISIBLE_DEVICES": "1"}, proc) == 1
    # no GPU: training on the CPU, the cores are the limit
    assert gpuslots.slot_count({"CUDA_VISIBLE_DEVICES": ""}, proc) == (os.cpu_count() or 1)
    with pytest.raises(gpuslots.GpuSlotError, match="HPSTUDY_JOBS_PER_GPU"):
        gpuslots.slot_count({"HPSTUDY_JOBS_PER_GPU": "0"}, proc)


def test_mode_and_batch_jobs():
    assert gpuslots.active({})
    # a batch job with one GPU (or none) is left as the scheduler set it up
    assert not gpuslots.active({"SLURM_JOB_ID": "12", "CUDA_VISIBLE_DEVICES": "0"})
    assert not gpuslots.active({"PBS_JOBID": "3.server", "CUDA_VISIBLE_DEVICES": ""})
    # one holding several GPUs spreads the runs packed into it
    assert gpuslots.active({"PBS_JOBID": "3.server", "CUDA_VISIBLE_DEVICES": "0,1"})
    assert gpuslots.active({"SLURM_JOB_ID": "12", "HPSTUDY_GPU_SLOTS": "on"})
    assert not gpuslots.active({"HPSTUDY_GPU_SLOTS": "off"})
    with pytest.raises(gpuslots.GpuSlotError, match="HPSTUDY_GPU_SLOTS"):
        gpuslots.active({"HPSTUDY_GPU_SLOTS": "maybe"})


def test_claims_spread_over_gpus_then_share(tmp_path):
    env = env_for(tmp_path, CUDA_VISIBLE_DEVICES="0,1")
    claims = []
    for _ in range(4):
        e = dict(env)
        c = gpuslots.claim(env=e)
        assert c is not None and e["CUDA_VISIBLE_DEVICES"] == c.device
        claims.append(c)
    assert [c.device for c in claims] == ["0", "1", "0", "1"]
    assert [c.slot for c in claims] == [0, 0, 1, 1]
    assert gpuslots.holders(tmp_path / "locks", ["0", "1"]) == {"0": 2, "1": 2}

    # a finished job frees its slot, and the next job takes exactly that GPU
    claims[1].release()
    assert gpuslots.holders(tmp_path / "locks", ["0", "1"]) == {"0": 2, "1": 1}
    nxt = gpuslots.claim(env=dict(env))
    assert (nxt.device, nxt.slot) == ("1", 0)
    for c in [*claims, nxt]:
        c.release()
    assert gpuslots.holders(tmp_path / "locks", ["0", "1"]) == {"0": 0, "1": 0}


def test_claim_is_a_noop_without_gpus_or_when_off(tmp_path):
    env = env_for(tmp_path, CUDA_VISIBLE_DEVICES="")
    assert gpuslots.claim(env=env) is None
    assert env["CUDA_VISIBLE_DEVICES"] == ""
    env = env_for(tmp_path, CUDA_VISIBLE_DEVICES="3", SLURM_JOB_ID="7")
    assert gpuslots.claim(env=env) is None
    assert env["CUDA_VISIBLE_DEVICES"] == "3"
    env = env_for(tmp_path, CUDA_VISIBLE_DEVICES="0,1", HPSTUDY_GPU_SLOTS="off")
    assert gpuslots.claim(env=env) is None
    assert env["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert not (tmp_path / "locks").exists()


def test_packed_pbs_job_gives_each_run_its_own_gpu(tmp_path):
    """A PBS job holding 2 GPUs (the cgroups hook set CUDA_VISIBLE_DEVICES to them) runs 4
    packed runs: they spread over its 2 GPUs, never onto other GPUs of the node."""
    env = env_for(tmp_path, PBS_JOBID="41.pbshost", CUDA_VISIBLE_DEVICES="2,3")
    claims = [gpuslots.claim(env=dict(env)) for _ in range(4)]
    assert [c.device for c in claims] == ["2", "3", "2", "3"]
    for c in claims:
        c.release()


def test_pbs_job_without_cgroups_uses_its_gpu_count(tmp_path):
    """Without CUDA_VISIBLE_DEVICES from PBS, the job's ngpus (passed by profiles/pbs as
    HPSTUDY_JOB_GPUS) bounds the devices of the node that runs are spread over."""
    proc = fake_proc(tmp_path, 4)
    env = {"PBS_JOBID": "41.pbshost", "HPSTUDY_JOB_GPUS": "2"}
    assert gpuslots.job_gpus(env, proc) == ["0", "1"]
    env["HPSTUDY_GPU_LOCK_DIR"] = str(tmp_path / "locks")
    devices = gpuslots.job_gpus(env, proc)
    claims = [gpuslots.claim(env=dict(env), devices=devices) for _ in range(2)]
    assert sorted(c.device for c in claims) == ["0", "1"]
    for c in claims:
        c.release()
    # each batch job has its own lock folder (its GPUs are its own)
    assert gpuslots.default_lock_dir({"PBS_JOBID": "41.pbshost"}).name.endswith("job41.pbshost")
    assert gpuslots.default_lock_dir({}) != gpuslots.default_lock_dir({"PBS_JOBID": "41.h"})


def test_claim_with_uuids_and_context_manager(tmp_path):
    env = env_for(tmp_path, CUDA_VISIBLE_DEVICES="GPU-aaa/1,GPU-bbb")
    with gpuslots.claim(env=env) as c:
        assert c.device == "GPU-aaa/1"
        assert c.path.parent == tmp_path / "locks" and "/" not in c.path.name
    assert c.fd is None
    assert gpuslots.holders(tmp_path / "locks", ["GPU-aaa/1", "GPU-bbb"])["GPU-aaa/1"] == 0


HOLDER = """
import sys, time
from hpstudy import gpuslots
c = gpuslots.claim()
print(c.device, c.slot, flush=True)
time.sleep(60)
"""


def start_holder(env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    p = subprocess.Popen([sys.executable, "-c", HOLDER], env=env, stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline().strip()
    assert line, "holder process printed nothing"
    return p, line


def test_lock_held_across_processes_and_freed_by_sigkill(tmp_path):
    """Separate job processes see each other's slots; a killed job leaves no stale slot."""
    env = {**os.environ, **env_for(tmp_path, CUDA_VISIBLE_DEVICES="0,1")}
    env.pop("SLURM_JOB_ID", None)
    env.pop("PBS_JOBID", None)
    env.pop("HPSTUDY_GPU_SLOTS", None)
    p0, got0 = start_holder(env)
    p1, got1 = start_holder(env)
    try:
        assert {got0, got1} == {"0 0", "1 0"}
        lock_dir = tmp_path / "locks"
        assert gpuslots.holders(lock_dir, ["0", "1"]) == {"0": 1, "1": 1}
        p0.send_signal(signal.SIGKILL)
        p0.wait(timeout=10)
        deadline = time.time() + 10
        while gpuslots.holders(lock_dir, ["0", "1"]) != {"0": 0, "1": 1}:
            assert time.time() < deadline, "SIGKILLed holder's slot was not freed"
            time.sleep(0.05)
        c = gpuslots.claim(env=env_for(tmp_path, CUDA_VISIBLE_DEVICES="0,1"))
        assert c.device == got0.split()[0]
        c.release()
    finally:
        for p in (p0, p1):
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)


def test_packed_pbs_job_processes_spread_over_its_gpus(tmp_path):
    """Four run processes started at once inside one PBS job holding 4 GPUs."""
    env = {**os.environ, **env_for(tmp_path, CUDA_VISIBLE_DEVICES="0,1,2,3")}
    env.pop("SLURM_JOB_ID", None)
    env.pop("HPSTUDY_GPU_SLOTS", None)
    env["PBS_JOBID"] = "77.pbshost"
    procs = [
        subprocess.Popen([sys.executable, "-c", HOLDER], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    try:
        got = sorted(p.stdout.readline().strip() for p in procs)
        assert got == ["0 0", "1 0", "2 0", "3 0"]
    finally:
        for p in procs:
            p.kill()
            p.wait(timeout=10)


def test_concurrent_starts_spread_evenly(tmp_path):
    """Jobs started at the same instant still get distinct GPUs (choice is serialised)."""
    env = {**os.environ, **env_for(tmp_path, CUDA_VISIBLE_DEVICES="0,1,2,3")}
    for var in ("SLURM_JOB_ID", "PBS_JOBID", "HPSTUDY_GPU_SLOTS"):
        env.pop(var, None)
    procs = [
        subprocess.Popen([sys.executable, "-c", HOLDER], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    try:
        got = sorted(p.stdout.readline().strip() for p in procs)
        assert got == ["0 0", "1 0", "2 0", "3 0"]
    finally:
        for p in procs:
            p.kill()
            p.wait(timeout=10)


def test_run_subcommand_keeps_the_slot_for_the_command(tmp_path):
    env = {**os.environ, **env_for(tmp_path, CUDA_VISIBLE_DEVICES="4,5")}
    for var in ("SLURM_JOB_ID", "PBS_JOBID", "HPSTUDY_GPU_SLOTS"):
        env.pop(var, None)
    probe = (
        "import os; from pathlib import Path; from hpstudy import gpuslots; "
        "print(os.environ['CUDA_VISIBLE_DEVICES'], "
        "gpuslots.holders(Path(os.environ['HPSTUDY_GPU_LOCK_DIR']), ['4', '5']))"
    )
    out = subprocess.run(
        [sys.executable, "-m", "hpstudy", "gpuslots", "run", "--", sys.executable, "-c", probe],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    # the exec'd command runs on the claimed GPU and the lock is still held while it runs
    assert out.stdout.strip() == "4 {'4': 1, '5': 0}"
    assert "CUDA_VISIBLE_DEVICES=4" in out.stderr


def test_count_subcommand(tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "0,1,2", "HPSTUDY_JOBS_PER_GPU": "2"}
    out = subprocess.run(
        [sys.executable, "-m", "hpstudy", "gpuslots", "count"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "6"


PROBE_SNAKEFILE = """
rule all:
    input: expand("out/{i}.txt", i=range(4))

rule train:
    output: "out/{i}.txt"
    shell:
        "python -m hpstudy gpuslots run -- sh -c "
        "'echo $CUDA_VISIBLE_DEVICES $(date +%s.%N) > {output}; sleep 2; date +%s.%N >> {output}'"
"""


def test_local_profile_runs_train_jobs_on_distinct_gpus(tmp_path):
    """profiles/local: 4 train jobs, 2 (fake) GPUs -> 2 at a time, never on the same GPU."""
    repo = Path(__file__).resolve().parents[1]
    (tmp_path / "Snakefile").write_text(PROBE_SNAKEFILE)
    env = {**os.environ, **env_for(tmp_path, CUDA_VISIBLE_DEVICES="0,1")}
    for var in ("SLURM_JOB_ID", "PBS_JOBID", "HPSTUDY_GPU_SLOTS", "HPSTUDY_JOBS_PER_GPU"):
        env.pop(var, None)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--profile",
            str(repo / "profiles" / "local"),
            "--cores",
            "4",
            "--directory",
            str(tmp_path),
            "-s",
            str(tmp_path / "Snakefile"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert 'gpu=Resource("gpu", 2)' in res.stdout + res.stderr
    runs = []
    for f in sorted((tmp_path / "out").glob("*.txt")):
        first, end = f.read_text().split("\n")[:2]
        device, start = first.split()
        runs.append((float(start), float(end), device))
    assert len(runs) == 4
    for start, end, _device in runs:
        overlapping = [r for r in runs if r[0] < end and start < r[1]]
        assert len(overlapping) <= 2, "more train jobs at once than GPU slots"
        assert sorted(r[2] for r in overlapping) == sorted({r[2] for r in overlapping}), (
            "two concurrent train jobs on one GPU"
        )
