from fulcrum_core.testing import check_cli_contract


def test_cli_contract():
    check_cli_contract(
        "seesaw_train",
        experiments={"seesaw_cbs", "seesaw_vs_cosine", "seesaw_alpha_beta", "seesaw_large_batch"},
    )
