import subprocess
import sys


def run(*args):
    return subprocess.run([sys.executable, "-m", "seesaw_train", *args], capture_output=True, text=True)


def test_list_reports_no_experiments_yet():
    proc = run("list")
    assert proc.returncode == 0, proc.stderr
    assert "seesaw_train: no experiments yet" in proc.stdout


def test_run_rejects_unknown_experiment_by_name():
    proc = run("run", "no_such_experiment", "--out", "unused")
    assert proc.returncode == 2
    assert "no_such_experiment" in proc.stderr
