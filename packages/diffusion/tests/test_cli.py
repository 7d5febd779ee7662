from fulcrum_core.testing import check_cli_contract


def test_cli_contract():
    check_cli_contract("diffusion", experiments={"collapse_samplers", "seesaw_noise", "collapse_mitigation"})
