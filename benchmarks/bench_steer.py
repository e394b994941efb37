"""Steering overhead (ConVA hooks on all selected layers) and gate latency: `conva-nb bench`."""

from _common import report
from conva_nb.bench import run_bench

if __name__ == "__main__":
    report("steer", run_bench("embedded"))
