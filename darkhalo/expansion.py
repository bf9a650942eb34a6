"""Grid expansion: hosts from the parent sample -> one manifest row per stamp to make.

Pure batch functions (pandas in, pandas out) that the manifest stage runs inside Spark's
``mapInPandas`` and the tests run directly. Every decision is a hash of (seed, host, config)
(darkhalo.hashing), so the manifest is the same however the hosts are partitioned.

Roles: a host is ``positive`` (gets grid configs), ``control`` (one uninjected stamp) or
``excluded`` (a known lens: never a control, never injected; and, when the spec trains without hard
negatives, a confuser host outside the test split). Each host carries its confuser class. Controls:
- ``unpaired``: each host is hashed into the control pool with the share that makes controls the
  spec's fraction of its split's stamps (``test_fraction`` may set the test split's own); the pools
  are disjoint random draws from the same parent sample, so positive and control hosts share one distribution (L1, L6).
- ``paired`` (Gen 1 reproduction): each positive stamp has an uninjected twin of the same host,
  kept with probability f / (1 - f) so that controls are a fraction f of stamps (f <= 0.5).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd

from darkhalo.hashing import hash64, host_ids, uniform
from darkhalo.sky import SPLITS, healpix_of, split_of_pixels
from darkhalo.sources import draw_source_parameters
from darkhalo.spec import ControlsSpec, GenerationSpec, GridSpec, SourceSpec, SplitsSpec, confuser_rates
from darkhalo.spec_view import SpecView
from darkhalo.surveys.confusers import draw_classes
from data_contracts import confusers
from data_contracts.catalog import HostRow
from data_contracts.manifest import GRID_COLUMNS, SOURCE_COLUMNS, Manifest
from data_contracts.parent_sample import ParentSample
from data_contracts.schema import column_names
from data_contracts.survey import KEY

#: Host columns carried from the parent sample into every manifest row (what inject and the
#: invariants need: position, PSF, depth, shape, fluxes).
HOST_COLUMNS = column_names(HostRow)
#: What expansion reads from the parent sample.
PARENT_COLUMNS = (*HOST_COLUMNS, ParentSample.KNOWN_LENS)
MANIFEST_COLUMNS = column_names(Manifest)
_AXIS_TO_COLUMN = {
    "theta_e_arcsec": "theta_e",
    "src_reff_arcsec": "src_reff",
    "src_e": "src_e",
    "shear": "shear",
    "src_dmag": "src_dmag",
}


@dataclass(frozen=True)
class Expansion:
    """The spec sections and seed that expansion reads, taken from a spec (or its view) once.
    ``confuser_rates``: the mock sky's confuser shares (empty: smooth hosts), None for a real sky."""

    grid: GridSpec
    controls: ControlsSpec
    splits: SplitsSpec
    source: SourceSpec
    seed: int
    confuser_rates: dict[str, float] | None

    @classmethod
    def of(cls, spec: GenerationSpec | SpecView) -> Expansion:
        """The expansion settings of ``spec`` (a GenerationSpec or a SpecView declaring these sections)."""
        return cls(
            grid=spec.grid,
            controls=spec.controls,
            splits=spec.splits,
            source=spec.source,
            seed=spec.seed,
            confuser_rates=confuser_rates(spec.survey),
        )


def host_confusers(hosts: pd.DataFrame, expansion: Expansion) -> np.ndarray:
    """Each host's confuser class as its survey draws it (data_contracts.confusers): a real sky's are unlabelled."""
    if expansion.confuser_rates is None:
        return np.full(len(hosts), confusers.UNLABELLED, dtype=object)
    keys = hosts[list(KEY)].to_numpy(np.int64)
    return draw_classes(expansion.seed, keys, expansion.confuser_rates)


def grid_configs(grid: GridSpec) -> pd.DataFrame:
    """Every combination of the grid's axes, numbered 0.. in axis order (config_id)."""
    axes = grid.axes
    combos = list(itertools.product(*axes.values()))
    frame = pd.DataFrame(combos, columns=[_AXIS_TO_COLUMN[name] for name in axes])
    if "src_dmag" not in frame:
        frame["src_dmag"] = np.nan
    frame.insert(0, "config_id", np.arange(len(frame), dtype=np.int32))
    return frame


def configs_per_host(grid: GridSpec) -> int:
    """How many configs each positive host gets."""
    return min(grid.configs_per_host or grid.n_configs, grid.n_configs)


def control_pool_share(fraction: float, k: int) -> float:
    """Share p of hosts to put in the control pool so controls are ``fraction`` of stamps.

    A control host gives one stamp and a positive host k, so p / (p + k (1 - p)) = fraction.
    """
    return fraction * k / (1 - fraction + fraction * k)


def host_frame(parent: pd.DataFrame, *, expansion: Expansion) -> pd.DataFrame:
    """Hosts with host_id, healpix, split and role (positive, control or excluded)."""
    seed = expansion.seed
    hosts = parent.loc[:, list(PARENT_COLUMNS)].reset_index(drop=True)
    hosts.insert(0, "host_id", host_ids(hosts["RELEASE"], hosts["BRICKID"], hosts["OBJID"]))
    hosts["healpix"] = healpix_of(hosts["RA"].to_numpy(), hosts["DEC"].to_numpy(), expansion.splits.nside)
    hosts["split"] = split_of_pixels(hosts["healpix"].to_numpy(), seed, expansion.splits.fractions.model_dump())
    role = np.full(len(hosts), "positive", dtype=object)
    if expansion.controls.mode == "unpaired":
        k = configs_per_host(expansion.grid)
        shares = {split: control_pool_share(expansion.controls.fraction_in(split), k) for split in SPLITS}
        share = hosts["split"].map(shares).to_numpy(dtype=np.float64)
        role[uniform(seed, hosts["host_id"].to_numpy(), stream="role") < share] = "control"
    role[hosts["KNOWN_LENS"].to_numpy(dtype=bool)] = "excluded"
    hosts["confuser"] = host_confusers(hosts, expansion)
    if not expansion.controls.hard_negatives_in_training:
        confused = ~hosts["confuser"].isin([confusers.PLAIN, confusers.UNLABELLED]).to_numpy()
        role[confused & (hosts["split"] != "test").to_numpy()] = "excluded"
    hosts["role"] = role
    return hosts


def _stamp_ids(seed: int, host_id: np.ndarray, config_id: np.ndarray, label: np.ndarray) -> np.ndarray:
    return (hash64(seed, host_id, config_id.astype(np.int64) + 1, label, stream="stamp_id") >> np.uint64(1)).astype(
        np.int64
    )


def _chosen_configs(hosts: pd.DataFrame, configs: pd.DataFrame, k: int, seed: int) -> pd.DataFrame:
    """(host row, config) pairs: every config, or the k with the smallest hash per host."""
    n_hosts, n_configs = len(hosts), len(configs)
    host_index = np.repeat(np.arange(n_hosts), n_configs)
    config_index = np.tile(np.arange(n_configs), n_hosts)
    if k < n_configs:
        ranks = hash64(
            seed, hosts["host_id"].to_numpy()[:, None], configs["config_id"].to_numpy()[None, :], stream="config"
        )
        keep = np.argsort(ranks, axis=1, kind="stable")[:, :k]
        host_index = np.repeat(np.arange(n_hosts), k)
        config_index = keep.reshape(-1)
    rows = hosts.iloc[host_index].reset_index(drop=True)
    grid = configs.iloc[config_index].reset_index(drop=True)
    return pd.concat([rows, grid], axis=1)


def expand_hosts(hosts: pd.DataFrame, *, expansion: Expansion) -> pd.DataFrame:
    """Manifest rows (data_contracts.manifest.Manifest) for a batch of hosts from ``host_frame``."""
    seed = expansion.seed
    configs = grid_configs(expansion.grid)
    positives = _chosen_configs(hosts[hosts["role"] == "positive"], configs, configs_per_host(expansion.grid), seed)
    positives["label"] = np.int8(1)
    positives = pd.concat([positives, draw_source_parameters(positives, expansion.source, seed)], axis=1)

    if expansion.controls.mode == "paired":
        f = expansion.controls.fraction
        keep = uniform(seed, positives["host_id"].to_numpy(), positives["config_id"].to_numpy(), stream="twin")
        controls = positives.loc[keep < f / (1 - f), [*hosts.columns, "config_id"]].copy()
        controls["role"] = "control"
    else:
        controls = hosts[hosts["role"] == "control"].copy()
        controls["config_id"] = np.int32(-1)
    controls["label"] = np.int8(0)

    rows = pd.concat([positives, controls], ignore_index=True)
    rows["config_id"] = rows["config_id"].astype(np.int32)
    rows["label"] = rows["label"].astype(np.int8)
    rows["stamp_id"] = _stamp_ids(
        seed, rows["host_id"].to_numpy(), rows["config_id"].to_numpy(), rows["label"].to_numpy()
    )
    for column in (*GRID_COLUMNS, *SOURCE_COLUMNS):
        rows[column] = rows[column].astype(np.float64) if column in rows else np.nan
    return rows.loc[:, list(MANIFEST_COLUMNS)].sort_values("stamp_id", kind="stable").reset_index(drop=True)
