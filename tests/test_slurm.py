"""The Slurm profile on a real (one-node) Slurm cluster, not a dry-run.

`bash tests/slurm/cluster.sh start` brings the cluster up (.ci/run does); without it these tests
skip, saying why, unless FULCRUM_SLURM_REQUIRED=1 (CI), where they fail. The repository's
`--profile slurm` runs unchanged; only `--configfile tests/slurm/ci_cluster.yaml` (the cluster's
account and partitions, GPU requests at every scale) and two settings that keep the test short
(the first status check after 10 s instead of 40 s, and the Slurm logs of successful jobs kept so
the test can read them) are added.
"""

import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from wfhelpers import BIN, REPO, snakemake

pytestmark = [pytest.mark.slurm, pytest.mark.workflow]

CLUSTER_SH = REPO / "tests" / "slurm" / "cluster.sh"
CI_CLUSTER = REPO / "tests" / "slurm" / "ci_cluster.yaml"
FAIL_SNAKEFILE = REPO / "tests" / "slurm" / "Snakefile"
SLURM_DIR = Path(os.environ.get("FULCRUM_SLURM_DIR", "/tmp/fulcrum-slurm"))
# Not profile settings: they only make the test faster and let it read the logs of jobs that worked.
TEST_ONLY_ARGS = ["--slurm-init-seconds-before-status-checks", "10", "--slurm-keep-successful-logs"]
RUN_TIMEOUT = 240
SACCT_FIELDS = ["JobID", "State", "Partition", "Account", "ReqTRES", "Timelimit", "ReqCPUS", "SubmitLine"]
SUBMITTED = re.compile(r"Job \d+ has been submitted with SLURM jobid (\d+) \(log: (\S+)\)\.")


@dataclass
class Run:
    workdir: Path
    returncode: int
    output: str

    def run_id(self) -> str:
        match = re.search(r"SLURM run ID: (\S+)", self.output)
        assert match, self.output[-3000:]
        return match.group(1)

    def submissions(self) -> dict[str, tuple[str, Path]]:
        """{rule: (slurm job id, slurm log path)} from the executor's 'has been submitted' lines."""
        out = {}
        for jobid, log in SUBMITTED.findall(self.output):
            rule = re.search(r"/rule_([A-Za-z0-9_]+)/", log).group(1)
            out[rule] = (jobid, Path(log))
        return out


def ci_cluster():
    return yaml.safe_load(CI_CLUSTER.read_text())["cluster"]


# ------------------------------------------------------------------ the plan (no cluster needed)
@pytest.fixture(scope="module")
def plan():
    """The ci-scale target (one training run and its data) and each rule's planned resources."""
    proc = snakemake(
        "--profile", "slurm", "-n", "fig_seesaw_cbs", "--config", "scale=ci", "--configfile", str(CI_CLUSTER)
    )
    text = proc.stdout + proc.stderr
    runs = sorted(set(re.findall(r"results/seesaw_train/runs/([^/\s]+)/run\.json", text)))
    assert runs, text[-3000:]
    blocks = {}
    for block in text.split("\n\n"):
        match = re.search(r"^rule (seesaw_prepare_data|seesaw_train_run):", block, re.M)
        if match and match.group(1) not in blocks:
            res = dict(re.findall(r"(\w+)=([^,\s]+)", re.search(r"resources: (.*)", block).group(1)))
            threads = re.search(r"threads: (\d+)", block)
            res["threads"] = threads.group(1) if threads else "1"
            blocks[match.group(1)] = res
    return {"target": f"results/seesaw_train/runs/{runs[0]}/run.json", "run": runs[0], "resources": blocks}


def test_ci_cluster_config_makes_the_training_rule_ask_for_a_gpu(plan):
    cl = ci_cluster()
    train, prep = plan["resources"]["seesaw_train_run"], plan["resources"]["seesaw_prepare_data"]
    assert train.get("gpu") == "1" and train["slurm_partition"] == cl["gpu_partition"], train
    assert "gpu" not in prep and prep["slurm_partition"] == cl["partition"], prep
    assert train["slurm_account"] == prep["slurm_account"] == cl["account"]


# ------------------------------------------------------------------ the cluster
@pytest.fixture(scope="module")
def slurm_env():
    proc = subprocess.run(["bash", str(CLUSTER_SH), "status"], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0 or shutil.which("sbatch") is None:
        reason = (
            f"no Slurm test cluster up (start one with `bash tests/slurm/cluster.sh start`): "
            f"{' '.join(proc.stderr.split())}"
        )
        print(reason)
        if os.environ.get("FULCRUM_SLURM_REQUIRED") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "SLURM_CONF": str(SLURM_DIR / "etc" / "slurm.conf"),
    }


@pytest.fixture(scope="module")
def runs(slurm_env, plan, tmp_path_factory):
    """The workflow's ci-scale target and the failing Snakefile, both through `--profile slurm`, at once."""
    commands = {
        "workflow": ["--snakefile", str(REPO / "Snakefile"), plan["target"], "--config", "scale=ci"],
        "failing": ["--snakefile", str(FAIL_SNAKEFILE)],
    }
    procs, logs = {}, {}
    started = time.monotonic()
    for name, args in commands.items():
        wd = tmp_path_factory.mktemp(f"slurm_{name}")
        logs[name] = (wd, (wd.parent / f"{wd.name}.out").open("w+"))
        cmd = [str(BIN / "snakemake"), "--profile", "slurm", "--directory", str(wd), *args]
        cmd += ["--configfile", str(CI_CLUSTER), *TEST_ONLY_ARGS]
        procs[name] = subprocess.Popen(cmd, cwd=REPO, env=slurm_env, stdout=logs[name][1], stderr=subprocess.STDOUT)
    results = {}
    try:
        for proc in procs.values():
            proc.wait(timeout=max(1, RUN_TIMEOUT - (time.monotonic() - started)))
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.terminate()  # snakemake cancels its Slurm jobs on SIGTERM
                proc.wait(timeout=60)
    for name, proc in procs.items():
        wd, out = logs[name]
        out.seek(0)
        results[name] = Run(wd, proc.returncode, out.read())
        out.close()
    print(f"both Slurm runs took {time.monotonic() - started:.0f} s")
    return results


def sacct(slurm_env, run_id, expect):
    """sacct rows of one snakemake run (jobs are named by its run ID), once the `expect` job IDs are there
    with their submit lines (slurmctld sends them to slurmdbd a moment after the job ends)."""
    cmd = ["sacct", "-X", "-P", "-n", "--name", run_id, "--format", ",".join(SACCT_FIELDS)]
    for _ in range(60):
        out = subprocess.run(cmd, env=slurm_env, capture_output=True, text=True, check=True).stdout
        split = [line.split("|", len(SACCT_FIELDS) - 1) for line in out.splitlines()]
        rows = {cells[0]: dict(zip(SACCT_FIELDS, cells, strict=True)) for cells in split}
        if set(expect) <= set(rows) and all(rows[j]["SubmitLine"] and rows[j]["Partition"] for j in expect):
            return rows
        time.sleep(0.5)
    raise AssertionError(f"sacct has no complete records of {expect}: {out}")


def hhmmss(minutes: str) -> str:
    return f"{int(minutes) // 60:02d}:{int(minutes) % 60:02d}:00"


def flags(submit_line: str) -> str:
    """The sbatch options of a submit line (what comes before the wrapped snakemake command)."""
    assert submit_line.startswith("sbatch "), submit_line
    return submit_line.split(" --wrap", 1)[0] + " "


def test_workflow_runs_through_sbatch_and_makes_its_outputs(runs, plan):
    run = runs["workflow"]
    assert run.returncode == 0, run.output[-4000:]
    assert "Using profile slurm" in run.output
    wd = run.workdir
    assert (wd / plan["target"]).is_file()
    assert (wd / "results" / "seesaw_train" / "data" / "meta.json").is_file()
    assert (wd / "results" / "logs" / "seesaw_train" / "runs" / f"{plan['run']}.log").is_file()
    assert set(run.submissions()) == {"seesaw_prepare_data", "seesaw_train_run"}, run.output[-4000:]


def test_slurm_job_logs_are_in_the_plugins_folder(runs, plan):
    run = runs["workflow"]
    subs = run.submissions()
    logdir = run.workdir / ".snakemake" / "slurm_logs"
    expected = {
        "seesaw_prepare_data": logdir / "rule_seesaw_prepare_data",
        "seesaw_train_run": logdir / "rule_seesaw_train_run" / plan["run"],  # wildcards make a sub-folder
    }
    for rule, (jobid, log) in subs.items():
        assert log == expected[rule] / f"{jobid}.log", (rule, log)
        assert log.is_file(), log
        assert f"rule {rule}:" in log.read_text(), log.read_text()[-2000:]


def test_resources_become_the_right_sbatch_flags(runs, plan, slurm_env):
    run = runs["workflow"]
    subs = run.submissions()
    rows = sacct(slurm_env, run.run_id(), [jobid for jobid, _ in subs.values()])
    cl = ci_cluster()
    for rule, (jobid, _) in subs.items():
        row, res = rows[jobid], plan["resources"][rule]
        line = flags(row["SubmitLine"])
        assert row["State"] == "COMPLETED", row
        assert row["Account"] == cl["account"] and f" -A {cl['account']} " in line, row
        assert row["Partition"] == res["slurm_partition"] and f" -p {res['slurm_partition']} " in line, row
        assert f" -t {res['runtime']} " in line and row["Timelimit"] == hhmmss(res["runtime"]), row
        assert f" --mem {res['mem_mb']} " in line and f"mem={res['mem_mb']}M" in row["ReqTRES"], row
        assert f" --cpus-per-task={res['threads']} " in line and row["ReqCPUS"] == res["threads"], row
        if rule == "seesaw_train_run":
            assert " --gpus=1 " in line and "gres/gpu=1" in row["ReqTRES"], row
        else:
            assert "--gpus" not in line and "--gres" not in line and "gres/gpu" not in row["ReqTRES"], row


def test_a_failing_rule_is_reported_with_its_logs(runs, slurm_env):
    run = runs["failing"]
    assert run.returncode != 0, run.output[-4000:]
    subs = run.submissions()
    jobid, slurm_log = subs["fail"]
    assert slurm_log == run.workdir / ".snakemake" / "slurm_logs" / "rule_fail" / f"{jobid}.log"
    error = run.output[run.output.index("Error in rule fail:") :]
    assert f"SLURM-job '{jobid}' failed, SLURM status is: 'FAILED'" in error, error[:2000]
    assert f"logs/fail.log, {slurm_log}" in error, error[:2000]
    assert "this rule fails on purpose" in (run.workdir / "logs" / "fail.log").read_text()
    assert slurm_log.is_file() and "Error in rule fail:" in slurm_log.read_text()
    assert sacct(slurm_env, run.run_id(), [jobid])[jobid]["State"] == "FAILED"
