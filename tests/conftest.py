import pytest
from wfhelpers import snakemake


@pytest.fixture(scope="session")
def ci_workdir(tmp_path_factory):
    """The whole DAG run once at ci scale into a temporary directory (shared by the tests)."""
    wd = tmp_path_factory.mktemp("wf")
    snakemake("--cores", "2", "--directory", str(wd), "all", "--config", "scale=ci")
    return wd
