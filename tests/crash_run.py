"""A tiny real chain (survey -> select -> manifest -> inject -> train -> evaluate -> scan -> audit) for the
crash-safety tests.

Run as a script, ``crash_run.py ROOT STAGE`` runs one stage of ``tiny_spec()`` under ROOT after
warming Spark (for a stage that uses it), so that a kill timed from the stage's start line lands inside the stage;
``crash_run.py ROOT FIRST:LAST`` runs the stages from FIRST to LAST (the Spark master from
DARKHALO_SPARK_MASTER, as for any run).
"""

from __future__ import annotations

import sys
from pathlib import Path

from conftest import spec_data, with_small_real_sets

from darkhalo.runner import run_generation
from darkhalo.spec import GenerationSpec, spec_from_dict

#: The stages a kill is tried in, in pipeline order.
CHAIN = ("survey", "select", "manifest", "inject", "train", "evaluate", "scan", "audit")
#: The stages that start no Spark session (with the default engine: evaluate scores on the driver).
WITHOUT_SPARK = ("train", "evaluate")
#: A runs folder name that Hadoop and glob would read as a pattern, and a sibling folder that the pattern matches:
#: a run under the first must read nothing of the second.
LITERAL_RUNS = "runs [a]{b}*?"
DECOY_RUNS = "runs abc"


def tiny_spec() -> GenerationSpec:
    """The embedded recipe shrunk to ~300 hosts, 32x32 stamps and 2 CPU epochs (~1.5 min in all), scoring the
    small real sets, with 1 sky lens in 20 hosts for the scan to find."""
    data = spec_data("embedded")
    data["survey"] = {"kind": "mock", "n_objects": 3000, "sky_lenses": {"prevalence": 0.05}}
    data["splits"] = {"nside": 128}
    data["grid"]["theta_e_arcsec"] = [1.0, 1.5, 2.0]
    data["stamps"] = {"size": 32}
    data["psf"].update(kernel_size_pix=31)
    data["injection"].update(batch_size=64, shard_rows=200)
    data["source"]["mag_prior"].update(r_min=23.0, r_max=25.5)
    data["train"].update(epochs=2, batch_size=32)
    data["evaluate"]["lens_prevalence"] = 0.05
    data["engine"] = {"device": "cpu"}
    return spec_from_dict(with_small_real_sets(data))


def main(root: Path, stages: str) -> None:
    spec = tiny_spec()
    first, _, last = stages.partition(":")
    if first not in WITHOUT_SPARK:
        from darkhalo.spark import get_spark

        get_spark(spec.engine)
    run_generation(spec, root, start=first, stop=last or first)


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
