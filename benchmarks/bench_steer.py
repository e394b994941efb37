"""Steering overhead (ConVA hooks on all selected layers) and gate latency: `conva-nb bench`."""

from conva_nb.bench import run_bench

from _common import report

if __name__ == "__main__":
    report("steer", run_bench("embedded"))
