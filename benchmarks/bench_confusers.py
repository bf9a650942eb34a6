"""Confuser rendering cost per host against the mock cutout it is added to.

Side 1: ``confusers.render`` of each class on the mock's 126 px canvas (a 64 px stamp plus 31 px margins)
for ``N_HOSTS`` mock hosts. Peer: ``MockCutoutProvider.cutouts`` of the same hosts (64 px stamps: host,
neighbours, PSF, noise). One CPU thread, CPU seconds in alternating rounds (benchmarks/timing.py). The
ratio is a class's cost per host over the mock cutout's; at a confuser share of SHARE the inject stage
pays SHARE x the mean ratio on top of its mock cutouts.
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from timing import interleaved

from darkhalo.spec import MockSurvey
from darkhalo.surveys.confusers import HostLight, render
from darkhalo.surveys.mock import mock_catalog
from darkhalo.surveys.mock_cutouts import MARGIN, MockCutoutProvider
from darkhalo.surveys.orientation import pixel_ellipticity
from data_contracts.confusers import CLASSES
from data_contracts.survey import BANDS, KEY

SIZE = 64
CANVAS = SIZE + 2 * MARGIN
N_HOSTS = 256
REPEATS, ROUNDS = 2, 3
SHARE = 0.2  # of hosts with a confuser


def main() -> dict:
    survey = MockSurvey(kind="mock", n_objects=20_000)
    catalog = mock_catalog(survey, 1, 0)
    hosts = catalog[catalog["TYPE"].isin(["DEV", "SER"])].head(N_HOSTS)
    e1, e2 = pixel_ellipticity(hosts["SHAPE_E1"].to_numpy(), hosts["SHAPE_E2"].to_numpy())
    lights = [
        HostLight(
            row.SHAPE_R,
            row.SERSIC,
            e1[i],
            e2[i],
            np.array([getattr(row, f"FLUX_{b.upper()}") for b in BANDS]),
            np.array([getattr(row, f"MW_TRANSMISSION_{b.upper()}") for b in BANDS]),
        )
        for i, row in enumerate(hosts.itertuples())
    ]
    keys = hosts[list(KEY)].to_numpy(np.int64).tolist()
    provider = MockCutoutProvider(survey, 1)

    def confusers(klass: str):
        return lambda: [render(1, key, klass, light, CANVAS) for key, light in zip(keys, lights, strict=True)]

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        sides = [[lambda: provider.cutouts(hosts, SIZE)], *([confusers(k)] for k in CLASSES)]
        seconds = interleaved(sides, ROUNDS, REPEATS)
    finally:
        torch.set_num_threads(threads)
    mock_ms = 1e3 * seconds[0] / len(hosts)
    per_class = {k: 1e3 * s / len(hosts) for k, s in zip(CLASSES, seconds[1:], strict=True)}
    mean_ratio = np.mean(list(per_class.values())) / mock_ms
    return {
        "hosts": len(hosts),
        "canvas": CANVAS,
        "mock_cutout_ms_per_host": round(mock_ms, 3),
        **{f"{k}_ms_per_host": round(v, 3) for k, v in per_class.items()},
        **{f"{k}_ratio_vs_mock_cutout": round(v / mock_ms, 2) for k, v in per_class.items()},
        f"inject_overhead_at_share_{SHARE}": round(SHARE * mean_ratio, 3),
    }


if __name__ == "__main__":
    from run import main as run_benchmarks  # prints and writes results/confusers.json

    sys.exit(run_benchmarks(["confusers"]))
