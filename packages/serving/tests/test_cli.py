from fulcrum_core.testing import check_cli_contract


def test_cli_contract():
    check_cli_contract(
        "serving",
        experiments={
            "serving_rate_sweep",
            "serving_prefix_hotspots",
            "serving_autoscaling",
            "serving_ablations",
            "sim_validation",
        },
    )
