"""The DAG's shape, without running jobs: lint, dry-runs at every scale, the Slurm profile."""

import re
import shutil
import subprocess

import pytest
import yaml
from wfhelpers import BIN, REPO, planned_jobs, snakemake

pytestmark = pytest.mark.workflow


def fig_rules():
    out = snakemake("--list-rules").stdout
    return sorted({m for m in re.findall(r"^(fig_\w+)", out, flags=re.M)})


def test_lint_passes():
    proc = snakemake("--lint", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_rule_files_are_snakefmt_clean_and_python_is_ruff_clean():
    fmt = subprocess.run(
        [str(BIN / "snakefmt"), "--check", "Snakefile", "workflow/rules"], cwd=REPO, capture_output=True, text=True
    )
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr
    ruff = subprocess.run([str(BIN / "ruff"), "check", "."], cwd=REPO, capture_output=True, text=True)
    assert ruff.returncode == 0, ruff.stdout


# figures `all` leaves out unless the config opts in: vLLM on a GPU cluster (serving_vllm.enabled)
OPT_IN_FIGURES = {"fig_sim_validation_vllm"}


@pytest.mark.parametrize("scale", ["ci", "local", "paper"])
def test_dry_run_plans_every_figure_at_every_scale(scale):
    proc = snakemake("-n", "all", "--config", f"scale={scale}")
    jobs = planned_jobs(proc.stdout + proc.stderr)
    figures = set(fig_rules()) - OPT_IN_FIGURES
    assert figures, "no fig_* rules found"
    for fig in figures:
        assert jobs.get(fig) == 1, (fig, jobs)
        assert jobs.get(fig.replace("fig_", "run_", 1)) == 1, (fig, jobs)
    assert not OPT_IN_FIGURES & set(jobs), jobs
    assert jobs.get("claims") == 1 and jobs.get("all") == 1


def test_one_figure_target_builds_only_that_figure_and_its_inputs():
    proc = snakemake("-n", "fig_sgd_bias_variance", "--config", "scale=ci")
    assert planned_jobs(proc.stdout + proc.stderr) == {"run_sgd_bias_variance": 1, "fig_sgd_bias_variance": 1}


def test_figure_rules_have_no_wildcards():
    # `snakemake fig_x` works as a target only for wildcard-free rules; a rule with
    # wildcards in its output cannot be requested by name.
    for fig in fig_rules():
        proc = snakemake("-n", fig, "--config", "scale=ci", check=False)
        assert proc.returncode == 0, (fig, proc.stderr[-2000:])


def test_slurm_profile_plans_every_job_with_rule_resources(tmp_path):
    cluster = tmp_path / "cluster.yaml"
    cluster.write_text(yaml.safe_dump({"cluster": {"account": "proj42", "partition": "cpuq", "gpu_partition": "gpuq"}}))
    proc = snakemake("--profile", "slurm", "all", "-n", "--configfile", str(cluster))
    text = proc.stdout + proc.stderr
    assert "Using profile slurm" in text
    jobs = planned_jobs(text)
    assert jobs.get("run_sgd_bias_variance") == 1 and jobs.get("all") == 1
    resources = re.findall(r"resources: (.*)", text)
    run_res = [r for r in resources if "runtime=" in r and "mem_mb=" in r]
    assert run_res, text[-3000:]
    for r in run_res:
        assert "slurm_partition=cpuq" in r and "slurm_account=proj42" in r


def test_paper_scale_training_jobs_ask_slurm_for_a_gpu(tmp_path):
    cluster = tmp_path / "cluster.yaml"
    cluster.write_text(yaml.safe_dump({"cluster": {"account": "proj42", "partition": "cpuq", "gpu_partition": "gpuq"}}))
    proc = snakemake("--profile", "slurm", "all", "-n", "--configfile", str(cluster), "--config", "scale=paper")
    text = proc.stdout + proc.stderr
    blocks = [b for b in text.split("\n\n") if "rule seesaw_train_run:" in b]
    assert blocks, text[-3000:]
    for block in blocks:
        assert "gpu=1" in block and "slurm_partition=gpuq" in block, block
    cpu_blocks = [b for b in text.split("\n\n") if "rule run_sgd_bias_variance:" in b]
    assert cpu_blocks and "gpu=" not in cpu_blocks[0] and "slurm_partition=cpuq" in cpu_blocks[0]


def test_slurm_profile_sets_no_default_resources_and_no_default_workflow_profile():
    # A `profiles/default` workflow profile is merged on top of --profile and can replace
    # whole keys (default-resources); per-rule resources must stay authoritative.
    assert not (REPO / "profiles" / "default").exists()
    profile = yaml.safe_load((REPO / "slurm" / "config.yaml").read_text())
    assert profile["executor"] == "slurm"
    assert "default-resources" not in profile and "set-resources" not in profile


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--config", "scale=huge"], "instance['scale']"),
        (["--config", "shared_dat=x"], "'shared_dat' was unexpected"),
        (["--config", "experiments={sgd_bias_variance: {nosie_var: 1}}"], "'nosie_var' was unexpected"),
        (
            ["--config", "experiments={sgd_bias_variance: {dim: -3}}"],
            "instance['experiments']['sgd_bias_variance']['dim']",
        ),
    ],
)
def test_config_errors_name_the_bad_key(args, needle):
    proc = snakemake("-n", "all", *args, check=False)
    assert proc.returncode != 0
    assert needle in proc.stdout + proc.stderr


def test_scale_file_errors_name_the_file_and_key(tmp_path):
    # a copy of the workflow with a broken scale file
    for name in ("Snakefile", "workflow", "config", "envs"):
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    bad = tmp_path / "config" / "scale" / "ci.yaml"
    bad.write_text(bad.read_text().replace("n_max:", "n_maks:"))
    proc = subprocess.run(
        [str(BIN / "snakemake"), "-n", "all", "--config", "scale=ci"], cwd=tmp_path, capture_output=True, text=True
    )
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "ci.yaml" in out and "'n_maks' was unexpected" in out


def test_vllm_cluster_rules_plan_gpu_jobs_under_the_slurm_profile():
    """vLLM never runs here; its rules must still plan at paper scale with one GPU per tp (two for P/D)."""
    proc = snakemake(
        "-n", "-p", "--profile", "slurm", "--config", "scale=paper", "--", "fig_sim_validation_vllm", "vllm_bench_pd"
    )
    out = proc.stdout + proc.stderr
    jobs = planned_jobs(out)
    assert {"vllm_profile", "vllm_bench", "vllm_bench_pd", "run_sim_validation_vllm"} <= set(jobs)
    blocks = {b.split(":", 1)[0]: b for b in out.split("\nrule ")[1:]}
    assert "gpu=1" in blocks["vllm_bench"] and "gpu=2" in blocks["vllm_bench_pd"]
    assert "vllm serve meta-llama/" in blocks["vllm_bench"] and "--kv-transfer-config" not in blocks["vllm_bench"]
    assert "vllm_pd_launch.sh" in blocks["vllm_bench_pd"] and "NixlConnector" in blocks["vllm_bench_pd"]
